// Read-only memory mapping of a whole file (RAII). The mapping is MAP_SHARED, so several engines
// over the same file share the page cache instead of holding private copies. The file stays open
// so that each forward step can check it was not changed on disk since it was mapped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace geb {

class MappedFile {
 public:
  // Maps `path`. Throws EngineError (Io) when the file cannot be opened or mapped, and
  // EngineError (ModelFormat) when it is empty or is not a regular file (a FIFO, device or directory).
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Checks that the open file's size, modification time, device and inode are the ones it had
  // when mapped, and throws EngineError (ModelFormat) otherwise. Reading a shrunk file faults
  // with SIGBUS, and rewritten bytes give wrong results without an error.
  // NOTE: the engine calls this before a step, so a file that shrinks during a step still faults.
  void check_unchanged() const;

  // Drops this process's resident pages of bytes [offset, offset + bytes), whole pages only, so a
  // copy made elsewhere (repacked weights) does not hold the memory twice. The bytes stay
  // readable: a later access faults them back in from the page cache or the file. A hint only,
  // so a failure is ignored.
  void release(uint64_t offset, uint64_t bytes) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  int fd_ = -1;
  // Identity and modification time of the file when it was mapped.
  uint64_t dev_ = 0;
  uint64_t ino_ = 0;
  int64_t mtime_sec_ = 0;
  int64_t mtime_nsec_ = 0;
};

}  // namespace geb
