// Key/value cache of every sequence: for each (sequence, layer, KV head) a block of n_ctx rows of
// head_dim elements for the keys (stored after RoPE) and the same for the values, as F32 or IEEE
// half. Memory is reserved with an anonymous mapping, so pages the sequences never reach are not
// committed by the OS.
#pragma once

#include <atomic>
#include <memory>
#include <cstddef>
#include <cstdint>

namespace geb {

enum class KvType { F32, F16 };

class KvCache {
 public:
  KvCache(KvType type, int n_seq, int n_layer, int n_head_kv, int n_ctx, int head_dim);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  KvType type() const { return type_; }
  size_t element_bytes() const { return type_ == KvType::F32 ? 4 : 2; }
  int n_ctx() const { return n_ctx_; }
  int n_seq() const { return n_seq_; }
  uint64_t bytes() const { return bytes_; }

  // Row 0 of the keys of (seq, layer, head): n_ctx rows of head_dim elements follow.
  uint8_t* keys(int seq, int layer, int head) { return keys_ + block_offset(seq, layer, head); }
  uint8_t* values(int seq, int layer, int head) { return values_ + block_offset(seq, layer, head); }

  // Valid cached positions of a sequence: positions [0, length) contain keys and values.
  // Atomic (relaxed) because the binding may read a length on the main thread while a forward
  // step commits new lengths on a worker thread; such a read returns the old or the new length.
  int length(int seq) const { return lengths_[static_cast<size_t>(seq)].load(std::memory_order_relaxed); }
  void set_length(int seq, int length) { lengths_[static_cast<size_t>(seq)].store(length, std::memory_order_relaxed); }

 private:
  size_t block_offset(int seq, int layer, int head) const {
    return ((static_cast<size_t>(seq) * n_layer_ + layer) * n_head_kv_ + head) * block_bytes_;
  }

  KvType type_;
  int n_seq_, n_layer_, n_head_kv_, n_ctx_, head_dim_;
  size_t block_bytes_;
  uint64_t bytes_;
  uint8_t* keys_ = nullptr;
  uint8_t* values_ = nullptr;
  std::unique_ptr<std::atomic<int>[]> lengths_;  // (n_seq)
};

}  // namespace geb
