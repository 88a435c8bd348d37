// The forward pass and the sequence operations of the engine. GEB and llama models run the same
// code: the loader has already normalized tensor names, and the plan's ropeDim sets how much of
// each head RoPE rotates.
#include "forward.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "error.h"
#include "kernel_table.h"
#include "kernels/numeric.h"
#include "kernels/quant.h"
#include "rope_tables.h"

namespace geb {
namespace {

// Minimum rows per claimed matmul chunk: small enough to balance 64-row matrices over a few
// threads, large enough that the atomic claim is noise next to the row's dot products.
constexpr int64_t kMinMatmulRows = 16;

// Matmul chunks are whole multiples of this many rows, so a chunk never splits a group of rows
// repacked together (kernels/quant.h). A split group would be computed by both threads.
constexpr int64_t kMatmulRowAlign = kernels::kRepackRows;

// Minimum weight bytes per claimed matmul chunk, per token of the batch. 64 KiB stream in about
// 2 us on the AMD EPYC Zen 3 VM we measured (about 30 GB/s from L3). By our estimate that is
// several times what handing a chunk to a spinning worker and waiting for it costs. A job no
// larger than one such chunk runs on the calling thread, so a tiny matrix never waits for a worker.
constexpr int64_t kMinMatmulChunkBytes = int64_t{64} << 10;

// Attention jobs below this many query-key multiply-adds (summed over the job's items) run on the
// calling thread. Early in a decode one token's attention takes a microsecond or two, which by our
// estimate is about what handing half of it to another thread and waiting for it costs.
constexpr int64_t kMinParallelAttentionMacs = int64_t{1} << 17;

struct MatmulTask {
  const Matrix* w;
  const float* x;  // (n_tokens, w->cols)
  float* y;        // (n_tokens, ldy), columns [0, w->rows) written
  int ldy;
};

}  // namespace

Engine::Engine(const PlanSpec& plan, const EngineOptions& options) : options_(options) {
  if (options.threads < 1) {
    throw EngineError(ErrorCode::InvalidArgument, "threads must be at least 1, got " + std::to_string(options.threads));
  }
  if (options.n_seq_max < 1) {
    throw EngineError(ErrorCode::InvalidArgument, "nSeqMax must be at least 1, got " + std::to_string(options.n_seq_max));
  }
  if (options.context_size < 0) {
    throw EngineError(ErrorCode::InvalidArgument, "contextSize must be positive, got " + std::to_string(options.context_size));
  }
  kernels_ = &kernel_table(options.tier);
  model_ = std::make_unique<Model>(plan);

  const Hparams& hp = model_->hparams();
  const int n_ctx = options.context_size > 0 ? options.context_size : hp.n_ctx_train;
  kv_ = std::make_unique<KvCache>(options.kv_type, options.n_seq_max, hp.n_layer, hp.n_head_kv, n_ctx, hp.head_dim);
  pool_ = std::make_unique<ThreadPool>(options.threads);
  repacked_ = std::make_unique<RepackedWeights>(*model_, *kernels_, *pool_);

  theta_ = rope_theta(hp.rope_base, hp.rope_dim);

  const size_t q_dim = static_cast<size_t>(hp.n_head) * hp.head_dim;
  const size_t kv_dim = static_cast<size_t>(hp.n_head_kv) * hp.head_dim;
  x_.assign(kChunk * static_cast<size_t>(hp.n_embd), 0.0f);
  h_.assign(kChunk * static_cast<size_t>(hp.n_embd), 0.0f);
  q_.assign(kChunk * q_dim, 0.0f);
  k_.assign(kChunk * kv_dim, 0.0f);
  v_.assign(kChunk * kv_dim, 0.0f);
  attn_.assign(kChunk * q_dim, 0.0f);
  proj_.assign(kChunk * static_cast<size_t>(hp.n_embd), 0.0f);
  gate_.assign(kChunk * static_cast<size_t>(hp.n_ff), 0.0f);
  up_.assign(kChunk * static_cast<size_t>(hp.n_ff), 0.0f);
  cos2_.assign(kChunk * static_cast<size_t>(hp.rope_dim), 0.0f);
  sin2_.assign(kChunk * static_cast<size_t>(hp.rope_dim), 0.0f);
  attention_scratch_.assign(
      static_cast<size_t>(pool_->size()) * kernels::attention_scratch_floats(hp.n_head / hp.n_head_kv, hp.head_dim), 0.0f);
  row_scratch_.assign(static_cast<size_t>(pool_->size()) * hp.head_dim, 0.0f);
  out_rows_.assign(kChunk, 0);

  // quantized weights multiply activations prepared as int8 blocks: size one slot per matmul of
  // a job for the widest input (n_embd, n_head * head_dim or n_ff)
  bool any_prepare = false;
  auto note = [&](const Matrix& m) { any_prepare = any_prepare || kernels_->prepare[static_cast<int>(m.type)] != nullptr; };
  for (const Layer& layer : model_->layers()) {
    for (const Matrix* m : {&layer.attn_q, &layer.attn_k, &layer.attn_v, &layer.attn_output, &layer.ffn_gate, &layer.ffn_up,
                            &layer.ffn_down}) {
      note(*m);
    }
  }
  note(model_->output());
  if (any_prepare) {
    int widest = hp.n_embd;
    if (static_cast<int>(q_dim) > widest) widest = static_cast<int>(q_dim);
    if (hp.n_ff > widest) widest = hp.n_ff;
    prepared_slot_row_bytes_ = kernels::prepared_row_bytes(kernels::WeightType::Q8_0, widest);
    prepared_.assign(3 * kChunk * prepared_slot_row_bytes_, 0);
  }
}

uint64_t Engine::scratch_bytes() const {
  const size_t floats = x_.size() + h_.size() + q_.size() + k_.size() + v_.size() + attn_.size() + proj_.size() +
                        gate_.size() + up_.size() + cos2_.size() + sin2_.size() + attention_scratch_.size() +
                        row_scratch_.size();
  return floats * sizeof(float) + prepared_.size();
}

void Engine::check_seq(int seq) const {
  if (seq < 0 || seq >= kv_->n_seq()) {
    throw EngineError(ErrorCode::InvalidArgument, "sequence id " + std::to_string(seq) + " is out of range; this engine has nSeqMax=" +
                                                      std::to_string(kv_->n_seq()) + " sequences (ids 0.." +
                                                      std::to_string(kv_->n_seq() - 1) + ")");
  }
}

int Engine::sequence_length(int seq) const {
  check_seq(seq);
  return kv_->length(seq);
}

void Engine::matmul(const Matrix& w, const kernels::PreparedX& x, int n_tokens, float* y, int ldy, int r0, int r1) const {
  const int type = static_cast<int>(w.type);
  const kernels::MatmulFn fn = w.repacked_x8 ? kernels_->matmul_x8[type] : kernels_->matmul[type];
  fn(w.data, w.row_stride, x, static_cast<int>(w.cols), n_tokens, r0, r1, y, ldy);
}

size_t Engine::logits_floats(const std::vector<BatchEntry>& batch) const {
  size_t n_out = 0;
  for (const BatchEntry& e : batch) n_out += e.wants_logits ? 1 : 0;
  return n_out * static_cast<size_t>(model_->hparams().n_vocab);
}

void Engine::forward(const std::vector<BatchEntry>& batch, const int32_t* abort_flag, float* logits, size_t logits_capacity) {
  const Hparams& hp = model_->hparams();
  if (batch.empty()) throw EngineError(ErrorCode::InvalidArgument, "the batch is empty; pass at least one token");

  // check every entry before touching the cache
  std::vector<int> next(static_cast<size_t>(kv_->n_seq()));
  for (int s = 0; s < kv_->n_seq(); ++s) next[static_cast<size_t>(s)] = kv_->length(s);
  size_t n_out = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const BatchEntry& e = batch[i];
    check_seq(e.seq);
    if (e.token < 0 || e.token >= hp.n_vocab) {
      throw EngineError(ErrorCode::InvalidArgument, "token id " + std::to_string(e.token) + " at batch index " + std::to_string(i) +
                                                        " is out of range; the model has " + std::to_string(hp.n_vocab) + " tokens");
    }
    if (e.pos >= kv_->n_ctx()) {
      throw EngineError(ErrorCode::ContextOverflow, "position " + std::to_string(e.pos) + " of sequence " + std::to_string(e.seq) +
                                                        " is past the context size " + std::to_string(kv_->n_ctx()) +
                                                        "; truncate or shift the sequence, or create the engine with a larger contextSize");
    }
    int& expected = next[static_cast<size_t>(e.seq)];
    if (e.pos != expected) {
      throw EngineError(ErrorCode::InvalidArgument, "position " + std::to_string(e.pos) + " at batch index " + std::to_string(i) +
                                                        " does not continue sequence " + std::to_string(e.seq) + ", which expects position " +
                                                        std::to_string(expected) + "; truncate the sequence first to rewrite it");
    }
    ++expected;
    if (e.wants_logits) ++n_out;
  }

  if (n_out * static_cast<size_t>(hp.n_vocab) > logits_capacity) {
    throw EngineError(ErrorCode::Internal, "the logits buffer holds " + std::to_string(logits_capacity) + " floats but the batch needs " +
                                               std::to_string(n_out * static_cast<size_t>(hp.n_vocab)));
  }
  int logits_row = 0;
  for (size_t begin = 0; begin < batch.size(); begin += kChunk) {
    const int n = static_cast<int>(batch.size() - begin < static_cast<size_t>(kChunk) ? batch.size() - begin : kChunk);
    forward_chunk(batch.data() + begin, n, abort_flag, logits, logits_row);
  }

  for (int s = 0; s < kv_->n_seq(); ++s) kv_->set_length(s, next[static_cast<size_t>(s)]);
}

void Engine::forward_chunk(const BatchEntry* entries, int n, const int32_t* abort_flag, float* logits, int& logits_row) {
  const Hparams& hp = model_->hparams();
  const kernels::KernelTable& kt = *kernels_;
  const int n_embd = hp.n_embd;
  const int head_dim = hp.head_dim;
  const int q_dim = hp.n_head * head_dim;
  const int kv_dim = hp.n_head_kv * head_dim;
  const int group = hp.n_head / hp.n_head_kv;
  const int rope_dim = hp.rope_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const size_t kv_bytes = kv_->element_bytes();
  const size_t attention_scratch = kernels::attention_scratch_floats(group, head_dim);

  // Runs up to three matmuls over the same tokens as one parallel job: the rows of all matrices
  // form one range, so threads do not wait between q, k and v (or gate and up).
  // Weights with a prepare step (Q8_0, Q4_0) get their input quantized first, once per distinct
  // (input, prepare) pair, split over the threads by token.
  auto run_matmuls = [&](std::initializer_list<MatmulTask> tasks, int n_tokens) {
    kernels::PreparedX prepared[3];
    int slot = 0;
    for (const MatmulTask& t : tasks) {
      const kernels::PrepareFn prepare = kt.prepare[static_cast<int>(t.w->type)];
      const int k = static_cast<int>(t.w->cols);
      if (prepare == nullptr) {
        prepared[slot] = {t.x, static_cast<size_t>(k) * sizeof(float)};
      } else {
        int reuse = -1;
        for (int j = 0; j < slot; ++j) {
          const MatmulTask& other = tasks.begin()[j];
          if (other.x == t.x && kt.prepare[static_cast<int>(other.w->type)] == prepare) reuse = j;
        }
        if (reuse >= 0) {
          prepared[slot] = prepared[reuse];
        } else {
          const size_t row_bytes = kernels::prepared_row_bytes(t.w->type, k);
          uint8_t* out = prepared_.data() + static_cast<size_t>(slot) * kChunk * prepared_slot_row_bytes_;
          pool_->parallel_for(n_tokens, 1, [&](int64_t begin, int64_t end, int) {
            prepare(t.x + begin * k, k, static_cast<int>(end - begin), out + static_cast<size_t>(begin) * row_bytes);
          });
          prepared[slot] = {out, row_bytes};
        }
      }
      ++slot;
    }

    int64_t total = 0;
    int64_t narrowest_row = INT64_MAX;  // bytes of the shortest weight row, which needs the most rows
    for (const MatmulTask& t : tasks) {
      total += t.w->rows;
      if (static_cast<int64_t>(t.w->row_stride) < narrowest_row) narrowest_row = static_cast<int64_t>(t.w->row_stride);
    }
    const int64_t row_work = narrowest_row * n_tokens;
    const int64_t byte_rows = (kMinMatmulChunkBytes + row_work - 1) / row_work;
    const int64_t min_rows = byte_rows > kMinMatmulRows ? byte_rows : kMinMatmulRows;
    // the pool claims whole multiples of min_chunk, so every chunk boundary is row-aligned
    const int64_t min_chunk = (min_rows + kMatmulRowAlign - 1) / kMatmulRowAlign * kMatmulRowAlign;
    pool_->parallel_for(total, min_chunk, [&](int64_t begin, int64_t end, int) {
      int64_t base = 0;
      int i = 0;
      for (const MatmulTask& t : tasks) {
        const int64_t lo = begin > base ? begin : base;
        const int64_t hi = end < base + t.w->rows ? end : base + t.w->rows;
        if (lo < hi) matmul(*t.w, prepared[i], n_tokens, t.y, t.ldy, static_cast<int>(lo - base), static_cast<int>(hi - base));
        base += t.w->rows;
        ++i;
      }
    });
  };

  auto row = [](std::vector<float>& buffer, int t, int width) { return buffer.data() + static_cast<size_t>(t) * width; };

  // embedding lookup and the rotation tables of each token's position
  const Matrix& embd = model_->token_embd();
  for (int t = 0; t < n; ++t) {
    const uint8_t* src = embd.data + static_cast<size_t>(entries[t].token) * embd.row_stride;
    kt.dequantize_row[static_cast<int>(embd.type)](src, n_embd, row(x_, t, n_embd));
    fill_rope_tables(theta_, entries[t].pos, row(cos2_, t, rope_dim), row(sin2_, t, rope_dim));
  }

  for (int l = 0; l < hp.n_layer; ++l) {
    const Layer& layer = model_->layers()[static_cast<size_t>(l)];
    if (abort_flag != nullptr && __atomic_load_n(abort_flag, __ATOMIC_ACQUIRE) != 0) {
      throw EngineError(ErrorCode::Aborted, "the forward step was aborted at layer " + std::to_string(l));
    }

    // attention norm
    for (int t = 0; t < n; ++t) kt.rmsnorm(row(x_, t, n_embd), layer.attn_norm.data(), n_embd, hp.rms_eps, row(h_, t, n_embd));

    // q, k, v projections
    run_matmuls({{&layer.attn_q, h_.data(), q_.data(), q_dim},
                 {&layer.attn_k, h_.data(), k_.data(), kv_dim},
                 {&layer.attn_v, h_.data(), v_.data(), kv_dim}},
                n);

    // rope on q and k, then k and v into the cache at each token's position
    for (int t = 0; t < n; ++t) {
      const BatchEntry& e = entries[t];
      kt.rope(row(q_, t, q_dim), hp.n_head, head_dim, rope_dim, row(cos2_, t, rope_dim), row(sin2_, t, rope_dim));
      kt.rope(row(k_, t, kv_dim), hp.n_head_kv, head_dim, rope_dim, row(cos2_, t, rope_dim), row(sin2_, t, rope_dim));
      for (int g = 0; g < hp.n_head_kv; ++g) {
        const float* ks = row(k_, t, kv_dim) + static_cast<size_t>(g) * head_dim;
        const float* vs = row(v_, t, kv_dim) + static_cast<size_t>(g) * head_dim;
        uint8_t* kd = kv_->keys(e.seq, l, g) + static_cast<size_t>(e.pos) * head_dim * kv_bytes;
        uint8_t* vd = kv_->values(e.seq, l, g) + static_cast<size_t>(e.pos) * head_dim * kv_bytes;
        if (kv_->type() == KvType::F32) {
          std::memcpy(kd, ks, static_cast<size_t>(head_dim) * sizeof(float));
          std::memcpy(vd, vs, static_cast<size_t>(head_dim) * sizeof(float));
        } else {
          auto* kh = reinterpret_cast<uint16_t*>(kd);
          auto* vh = reinterpret_cast<uint16_t*>(vd);
          for (int i = 0; i < head_dim; ++i) {
            kh[i] = kernels::float_to_half(ks[i]);
            vh[i] = kernels::float_to_half(vs[i]);
          }
        }
      }
    }

    // attention over the cache: one item per (token, KV head), each over positions 0..pos
    const kernels::AttentionFn attention = kv_->type() == KvType::F32 ? kt.attention_f32kv : kt.attention_f16kv;
    const int64_t attention_items = static_cast<int64_t>(n) * hp.n_head_kv;
    int64_t attention_macs = 0;
    for (int t = 0; t < n; ++t) attention_macs += static_cast<int64_t>(entries[t].pos + 1) * hp.n_head * head_dim;
    const int64_t attention_chunk = attention_macs < kMinParallelAttentionMacs ? attention_items : 1;
    pool_->parallel_for(attention_items, attention_chunk, [&](int64_t begin, int64_t end, int thread) {
      float* scratch = attention_scratch_.data() + static_cast<size_t>(thread) * attention_scratch;
      for (int64_t item = begin; item < end; ++item) {
        const int t = static_cast<int>(item / hp.n_head_kv);
        const int g = static_cast<int>(item % hp.n_head_kv);
        const BatchEntry& e = entries[t];
        const size_t head_offset = static_cast<size_t>(g) * group * head_dim;
        attention(row(q_, t, q_dim) + head_offset, head_dim, group, head_dim, kv_->keys(e.seq, l, g), kv_->values(e.seq, l, g),
                  e.pos + 1, scale, row(attn_, t, q_dim) + head_offset, head_dim, scratch);
      }
    });

    // output projection and residual
    run_matmuls({{&layer.attn_output, attn_.data(), proj_.data(), n_embd}}, n);
    for (size_t i = 0; i < static_cast<size_t>(n) * n_embd; ++i) x_[i] += proj_[i];

    // feed-forward norm
    for (int t = 0; t < n; ++t) kt.rmsnorm(row(x_, t, n_embd), layer.ffn_norm.data(), n_embd, hp.rms_eps, row(h_, t, n_embd));

    // gate and up projections
    run_matmuls({{&layer.ffn_gate, h_.data(), gate_.data(), hp.n_ff}, {&layer.ffn_up, h_.data(), up_.data(), hp.n_ff}}, n);

    // swiglu
    for (int t = 0; t < n; ++t) kt.swiglu(row(gate_, t, hp.n_ff), row(up_, t, hp.n_ff), hp.n_ff, row(gate_, t, hp.n_ff));

    // down projection and residual
    run_matmuls({{&layer.ffn_down, gate_.data(), proj_.data(), n_embd}}, n);
    for (size_t i = 0; i < static_cast<size_t>(n) * n_embd; ++i) x_[i] += proj_[i];
  }

  // final norm of the rows that want logits, gathered at the front of h_
  int n_out = 0;
  for (int t = 0; t < n; ++t) {
    if (!entries[t].wants_logits) continue;
    kt.rmsnorm(row(x_, t, n_embd), model_->output_norm().data(), n_embd, hp.rms_eps, row(h_, n_out, n_embd));
    ++n_out;
  }
  if (n_out == 0) return;

  // LM head
  float* out = logits + static_cast<size_t>(logits_row) * hp.n_vocab;
  run_matmuls({{&model_->output(), h_.data(), out, hp.n_vocab}}, n_out);
  logits_row += n_out;
}

void Engine::clear_sequence(int seq) {
  check_seq(seq);
  kv_->set_length(seq, 0);
}

void Engine::truncate_sequence(int seq, int n_keep) {
  check_seq(seq);
  if (n_keep < 0) throw EngineError(ErrorCode::InvalidArgument, "nKeep must be >= 0, got " + std::to_string(n_keep));
  if (n_keep < kv_->length(seq)) kv_->set_length(seq, n_keep);
}

void Engine::shift_sequence(int seq, int n_keep, int n_discard) {
  check_seq(seq);
  const int length = kv_->length(seq);
  if (n_keep < 0 || n_discard < 0 || static_cast<int64_t>(n_keep) + n_discard > length) {
    throw EngineError(ErrorCode::InvalidArgument, "cannot shift sequence " + std::to_string(seq) + " with nKeep=" + std::to_string(n_keep) +
                                                      " nDiscard=" + std::to_string(n_discard) + ": both must be >= 0 and nKeep + nDiscard at most the cached length " +
                                                      std::to_string(length));
  }
  if (n_discard == 0) return;

  const Hparams& hp = model_->hparams();
  const int head_dim = hp.head_dim;
  const size_t row_bytes = static_cast<size_t>(head_dim) * kv_->element_bytes();
  const int n_moved = length - n_keep - n_discard;
  std::vector<float> cos2(static_cast<size_t>(hp.rope_dim));
  std::vector<float> sin2(static_cast<size_t>(hp.rope_dim));
  fill_rope_tables(theta_, -n_discard, cos2.data(), sin2.data());

  pool_->parallel_for(static_cast<int64_t>(hp.n_layer) * hp.n_head_kv, 1, [&](int64_t begin, int64_t end, int thread) {
    float* tmp = row_scratch_.data() + static_cast<size_t>(thread) * head_dim;
    for (int64_t item = begin; item < end; ++item) {
      const int l = static_cast<int>(item / hp.n_head_kv);
      const int g = static_cast<int>(item % hp.n_head_kv);
      uint8_t* keys = kv_->keys(seq, l, g);
      uint8_t* values = kv_->values(seq, l, g);

      // move the kept tail down over the discarded positions
      std::memmove(keys + n_keep * row_bytes, keys + (n_keep + n_discard) * row_bytes, n_moved * row_bytes);
      std::memmove(values + n_keep * row_bytes, values + (n_keep + n_discard) * row_bytes, n_moved * row_bytes);

      // rotate the moved keys back by n_discard positions (RoPE angles add up)
      for (int p = n_keep; p < n_keep + n_moved; ++p) {
        uint8_t* k = keys + static_cast<size_t>(p) * row_bytes;
        if (kv_->type() == KvType::F32) {
          kernels_->rope(reinterpret_cast<float*>(k), 1, head_dim, hp.rope_dim, cos2.data(), sin2.data());
        } else {
          auto* kh = reinterpret_cast<uint16_t*>(k);
          for (int i = 0; i < head_dim; ++i) tmp[i] = kernels::half_to_float(kh[i]);
          kernels_->rope(tmp, 1, head_dim, hp.rope_dim, cos2.data(), sin2.data());
          for (int i = 0; i < head_dim; ++i) kh[i] = kernels::float_to_half(tmp[i]);
        }
      }
    }
  });
  kv_->set_length(seq, length - n_discard);
}

}  // namespace geb
