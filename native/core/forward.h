// The engine: a model, its KV cache, a thread pool and the scratch buffers of the forward pass.
// One forward step takes a batch of (sequence, position, token, wants-logits) entries, which may
// mix a prefill of one sequence with single tokens of others, and returns the logits rows of the
// entries that asked for them. Plain C++; the N-API layer is in native/binding/.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cpu/cpu.h"
#include "kernels/kernels.h"
#include "kv_cache.h"
#include "model.h"
#include "repack.h"
#include "thread_pool.h"

namespace geb {

struct EngineOptions {
  int threads = 1;
  cpu::Tier tier = cpu::Tier::Scalar;
  KvType kv_type = KvType::F32;
  int context_size = 0;  // 0: the model's n_ctx_train
  int n_seq_max = 1;
};

struct BatchEntry {
  int seq = 0;
  int pos = 0;
  int token = 0;
  bool wants_logits = false;
};

class Engine {
 public:
  // Builds the model and allocates the KV cache and scratch. Throws EngineError.
  Engine(const PlanSpec& plan, const EngineOptions& options);

  // Runs one step. For each sequence the batch's positions must continue its cache: the first
  // entry of sequence s has position length(s), the next length(s) + 1, and so on. `logits`
  // receives n_vocab floats per entry with wants_logits, in batch order, and must have room for
  // logits_floats(batch) of them (logits_capacity). `abort_flag`, when not null, is read between
  // layers; a non-zero value stops the step with ErrorCode::Aborted. The cache lengths change
  // only when the whole step succeeds, and `logits` contains no result after a failed step.
  // Throws EngineError.
  void forward(const std::vector<BatchEntry>& batch, const int32_t* abort_flag, float* logits, size_t logits_capacity);
  // Floats of logits a step over `batch` writes: n_vocab per entry with wants_logits.
  size_t logits_floats(const std::vector<BatchEntry>& batch) const;

  // Drops every cached position of a sequence.
  void clear_sequence(int seq);
  // Keeps positions [0, n_keep) of a sequence and drops the rest (no-op when n_keep >= length).
  void truncate_sequence(int seq, int n_keep);
  // Drops positions [n_keep, n_keep + n_discard), moves the later ones down by n_discard and
  // re-rotates their cached keys by -n_discard positions.
  void shift_sequence(int seq, int n_keep, int n_discard);
  int sequence_length(int seq) const;

  const Model& model() const { return *model_; }
  const KvCache& kv_cache() const { return *kv_; }
  const kernels::KernelTable& kernels() const { return *kernels_; }
  cpu::Tier tier() const { return options_.tier; }
  int threads() const { return pool_->size(); }
  int context_size() const { return kv_->n_ctx(); }
  int n_seq_max() const { return kv_->n_seq(); }
  uint64_t scratch_bytes() const;
  // Bytes of weights repacked at load for the tier's kernels (0 when none).
  uint64_t repacked_bytes() const { return repacked_->bytes(); }

 private:
  void check_seq(int seq) const;
  void forward_chunk(const BatchEntry* entries, int n, const int32_t* abort_flag, float* logits, int& logits_row);
  void matmul(const Matrix& w, const kernels::PreparedX& x, int n_tokens, float* y, int ldy, int r0, int r1) const;

  EngineOptions options_;
  std::unique_ptr<Model> model_;
  const kernels::KernelTable* kernels_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<ThreadPool> pool_;
  // Copies of the weights that the tier's kernels read in another layout (Q4_0x8, Q8_0x8). The
  // model's matrices point into it, so it is declared after model_ and destroyed before it.
  std::unique_ptr<RepackedWeights> repacked_;
  std::vector<float> theta_;  // (rope_dim / 2): ropeBase^(-2i / rope_dim), rounded to F32

  // Scratch for one chunk of at most kChunk tokens; shapes in (tokens, width) order.
  // Every matmul of a chunk reads its weights from memory once, so longer chunks read them fewer
  // times in a long prompt. 256 tokens took about 13% less CPU time than 64 for a 512-token F16
  // GEB-1.3B prefill, for about 22 MiB of scratch instead of 5.5 MiB.
  static constexpr int kChunk = 256;
  std::vector<float> x_;        // (kChunk, n_embd) residual stream
  std::vector<float> h_;        // (kChunk, n_embd) normed input of a sub-layer
  std::vector<float> q_;        // (kChunk, n_head * head_dim)
  std::vector<float> k_;        // (kChunk, n_head_kv * head_dim)
  std::vector<float> v_;        // (kChunk, n_head_kv * head_dim)
  std::vector<float> attn_;     // (kChunk, n_head * head_dim) attention output
  std::vector<float> proj_;     // (kChunk, n_embd) output of attn_output and ffn_down
  std::vector<float> gate_;     // (kChunk, n_ff)
  std::vector<float> up_;       // (kChunk, n_ff)
  std::vector<float> cos2_;     // (kChunk, rope_dim)
  std::vector<float> sin2_;     // (kChunk, rope_dim)
  std::vector<float> attention_scratch_;  // (threads, attention_scratch_floats)
  std::vector<float> row_scratch_;        // (threads, head_dim) for re-rotating F16 keys
  std::vector<int> out_rows_;             // (kChunk) chunk rows that want logits
  // (3, kChunk, prepared_slot_row_bytes_): activations quantized for Q8_0/Q4_0 weights, one slot
  // per matmul of a run_matmuls job. Empty when no weight needs a prepare step.
  std::vector<uint8_t> prepared_;
  size_t prepared_slot_row_bytes_ = 0;
};

}  // namespace geb
