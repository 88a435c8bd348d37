// Read-only memory mapping of a whole file (RAII). The mapping is MAP_SHARED, so several engines
// over the same file share the page cache instead of holding private copies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace geb {

class MappedFile {
 public:
  // Maps `path`; throws EngineError (Io) with the path and strerror on failure.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace geb
