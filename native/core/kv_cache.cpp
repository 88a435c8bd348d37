// KvCache allocation with anonymous mappings.
#include "kv_cache.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "error.h"

namespace geb {
namespace {

uint8_t* reserve(uint64_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    throw EngineError(ErrorCode::Io, "cannot reserve " + std::to_string(bytes) + " bytes for the KV cache: " +
                                         std::strerror(errno) + "; lower contextSize or nSeqMax");
  }
  return static_cast<uint8_t*>(p);
}

}  // namespace

KvCache::KvCache(KvType type, int n_seq, int n_layer, int n_head_kv, int n_ctx, int head_dim)
    : type_(type), n_seq_(n_seq), n_layer_(n_layer), n_head_kv_(n_head_kv), n_ctx_(n_ctx), head_dim_(head_dim),
      lengths_(new std::atomic<int>[static_cast<size_t>(n_seq)]) {
  for (int s = 0; s < n_seq; ++s) lengths_[static_cast<size_t>(s)].store(0, std::memory_order_relaxed);
  block_bytes_ = static_cast<size_t>(n_ctx) * head_dim * element_bytes();
  const uint64_t half = static_cast<uint64_t>(n_seq) * n_layer * n_head_kv * block_bytes_;
  bytes_ = 2 * half;
  keys_ = reserve(half);
  try {
    values_ = reserve(half);
  } catch (...) {
    ::munmap(keys_, half);
    throw;
  }
}

KvCache::~KvCache() {
  const uint64_t half = bytes_ / 2;
  ::munmap(keys_, half);
  ::munmap(values_, half);
}

}  // namespace geb
