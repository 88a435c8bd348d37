// POSIX implementation of MappedFile.
// TODO: Windows (CreateFileMapping / MapViewOfFile); the build targets Linux and macOS for now.
#include "mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "error.h"

namespace geb {
namespace {

// Modification time with nanoseconds; the field name differs between Linux and macOS.
void mtime_of(const struct stat& st, int64_t& sec, int64_t& nsec) {
#if defined(__APPLE__)
  sec = st.st_mtimespec.tv_sec;
  nsec = st.st_mtimespec.tv_nsec;
#else
  sec = st.st_mtim.tv_sec;
  nsec = st.st_mtim.tv_nsec;
#endif
}

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It has no
  // effect on a regular file, and anything else is rejected right after the fstat below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    throw EngineError(ErrorCode::Io, "cannot open model file " + path + ": " + std::strerror(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw EngineError(ErrorCode::Io, "cannot stat model file " + path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw EngineError(ErrorCode::ModelFormat,
                      "model file " + path + " is not a regular file (a FIFO, device or directory); pass the path of a model file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ == 0) {
    ::close(fd);
    throw EngineError(ErrorCode::ModelFormat, "model file " + path + " is empty");
  }
  void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
  if (mapped == MAP_FAILED) {
    const int err = errno;
    ::close(fd);
    throw EngineError(ErrorCode::Io, "cannot map model file " + path + ": " + std::strerror(err));
  }
  data_ = static_cast<const uint8_t*>(mapped);
  fd_ = fd;
  dev_ = static_cast<uint64_t>(st.st_dev);
  ino_ = static_cast<uint64_t>(st.st_ino);
  mtime_of(st, mtime_sec_, mtime_nsec_);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(other.data_),
      size_(other.size_),
      fd_(other.fd_),
      dev_(other.dev_),
      ino_(other.ino_),
      mtime_sec_(other.mtime_sec_),
      mtime_nsec_(other.mtime_nsec_) {
  other.data_ = nullptr;
  other.size_ = 0;
  other.fd_ = -1;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

void MappedFile::check_unchanged() const {
  if (fd_ < 0) return;
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    throw EngineError(ErrorCode::Io, "cannot stat model file " + path_ + ": " + std::strerror(errno));
  }
  int64_t mtime_sec = 0, mtime_nsec = 0;
  mtime_of(st, mtime_sec, mtime_nsec);
  // The open descriptor keeps the mapped inode alive, so a file deleted or replaced by rename
  // leaves the mapping intact and passes. A file truncated or rewritten in place changes its size
  // or mtime. ctime is not compared, because chmod, chown or a new hard link change it too.
  const bool same = static_cast<uint64_t>(st.st_size) == size_ && static_cast<uint64_t>(st.st_dev) == dev_ &&
                    static_cast<uint64_t>(st.st_ino) == ino_ && mtime_sec == mtime_sec_ && mtime_nsec == mtime_nsec_;
  if (!same) {
    throw EngineError(ErrorCode::ModelFormat,
                      "the model file " + path_ + " changed on disk after it was loaded; reload the model");
  }
}

void MappedFile::release(uint64_t offset, uint64_t bytes) const {
  if (data_ == nullptr || offset >= size_) return;
  const uint64_t end = bytes > size_ - offset ? size_ : offset + bytes;
  const long page_size = ::sysconf(_SC_PAGESIZE);
  const uint64_t page = page_size > 0 ? static_cast<uint64_t>(page_size) : 4096;
  // the mapping starts on a page boundary, so offsets round like addresses
  const uint64_t first = (offset + page - 1) / page * page;
  const uint64_t last = end / page * page;
  if (first < last) ::madvise(const_cast<uint8_t*>(data_) + first, last - first, MADV_DONTNEED);
}

}  // namespace geb
