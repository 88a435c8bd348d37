// Attention body shared by the SIMD tiers (layout in kernels.h, AttentionFn). Keys are taken in
// blocks of kAttentionBlock with an online softmax. Each block's scores may raise the running max.
// The running sum and the accumulated values are then rescaled by exp(old max - new max) before
// the block's exp(score - max) weights are added. Every key and value row is loaded once per
// block for all query heads of the group.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels.h"
#include "weight_load.h"

namespace geb::kernels {
namespace {

// Query heads whose accumulators are kept in registers at once; larger groups go in chunks.
constexpr int kGroupChunk = 8;

template <typename Ops, typename KV>
void attention_scores(const float* q, int q_stride, int n_group, int head_dim, const uint8_t* keys,
                      int n_block, float scale, float* scores) {
  using V = typename Ops::V;
  constexpr int W = Ops::W;
  const size_t row_bytes = static_cast<size_t>(head_dim) * KV::kBytes;

  for (int j = 0; j < n_block; ++j) {
    const uint8_t* krow = keys + static_cast<size_t>(j) * row_bytes;
    for (int g0 = 0; g0 < n_group; g0 += kGroupChunk) {
      const int gn = n_group - g0 < kGroupChunk ? n_group - g0 : kGroupChunk;
      V acc[kGroupChunk];
      for (int g = 0; g < gn; ++g) acc[g] = Ops::zero();
      int i = 0;
      for (; i + W <= head_dim; i += W) {
        const V kv = KV::template load<Ops>(krow + i * KV::kBytes);
        for (int g = 0; g < gn; ++g) acc[g] = Ops::fmadd(kv, Ops::load(q + static_cast<size_t>(g0 + g) * q_stride + i), acc[g]);
      }
      if (i < head_dim) {
        const int n = head_dim - i;
        const V kv = load_weights_partial<Ops, KV>(krow + i * KV::kBytes, n);
        for (int g = 0; g < gn; ++g) acc[g] = Ops::fmadd(kv, Ops::load_partial(q + static_cast<size_t>(g0 + g) * q_stride + i, n), acc[g]);
      }
      for (int g = 0; g < gn; ++g) scores[static_cast<size_t>(g0 + g) * kAttentionBlock + j] = Ops::hsum(acc[g]) * scale;
    }
  }
}

// Turns one head's block scores into exp(score - new max) in place and updates its running max
// and sum. Returns the factor by which the head's earlier accumulators must be scaled.
template <typename Ops>
float softmax_block_update(float* s, int n_block, float* run_max, float* run_sum) {
  using V = typename Ops::V;
  constexpr int W = Ops::W;

  float block_max = s[0];
  for (int j = 1; j < n_block; ++j) block_max = s[j] > block_max ? s[j] : block_max;
  const float new_max = block_max > *run_max ? block_max : *run_max;
  const float correction = ::expf(*run_max - new_max);  // 0 for the first block (max was -inf)

  const V vmax = Ops::set1(new_max);
  V vsum = Ops::zero();
  int j = 0;
  for (; j + W <= n_block; j += W) {
    const V e = Ops::exp(Ops::sub(Ops::load(s + j), vmax));
    Ops::store(s + j, e);
    vsum = Ops::add(vsum, e);
  }
  float sum = Ops::hsum(vsum);
  if (j < n_block) {
    const int n = n_block - j;
    Ops::store_partial(s + j, Ops::exp(Ops::sub(Ops::load_partial(s + j, n), vmax)), n);
    for (; j < n_block; ++j) sum += s[j];
  }

  *run_sum = *run_sum * correction + sum;
  *run_max = new_max;
  return correction;
}

template <typename Ops, typename KV>
void attention_values(const float* probs, int n_group, int head_dim, const uint8_t* values,
                      int n_block, const float* corrections, float* acc) {
  using V = typename Ops::V;
  constexpr int W = Ops::W;
  const size_t row_bytes = static_cast<size_t>(head_dim) * KV::kBytes;

  for (int g0 = 0; g0 < n_group; g0 += kGroupChunk) {
    const int gn = n_group - g0 < kGroupChunk ? n_group - g0 : kGroupChunk;
    for (int i = 0; i < head_dim; i += W) {
      const int n = head_dim - i < W ? head_dim - i : W;
      V a[kGroupChunk];
      for (int g = 0; g < gn; ++g) {
        float* ag = acc + static_cast<size_t>(g0 + g) * head_dim + i;
        const V old = n == W ? Ops::load(ag) : Ops::load_partial(ag, n);
        a[g] = Ops::mul(old, Ops::set1(corrections[g0 + g]));
      }
      for (int j = 0; j < n_block; ++j) {
        const uint8_t* vrow = values + static_cast<size_t>(j) * row_bytes + i * KV::kBytes;
        const V vv = n == W ? KV::template load<Ops>(vrow) : load_weights_partial<Ops, KV>(vrow, n);
        for (int g = 0; g < gn; ++g) {
          a[g] = Ops::fmadd(Ops::set1(probs[static_cast<size_t>(g0 + g) * kAttentionBlock + j]), vv, a[g]);
        }
      }
      for (int g = 0; g < gn; ++g) {
        float* ag = acc + static_cast<size_t>(g0 + g) * head_dim + i;
        if (n == W) Ops::store(ag, a[g]);
        else Ops::store_partial(ag, a[g], n);
      }
    }
  }
}

template <typename Ops, typename KV>
void attention_simd(const float* q, int q_stride, int n_group, int head_dim, const void* k,
                    const void* v, int n_keys, float scale, float* out, int out_stride, float* scratch) {
  float* scores = scratch;                                              // (n_group, kAttentionBlock)
  float* run_max = scores + static_cast<size_t>(n_group) * kAttentionBlock;  // (n_group)
  float* run_sum = run_max + n_group;                                   // (n_group)
  float* correction = run_sum + n_group;                                // (n_group)
  float* acc = correction + n_group;                                    // (n_group, head_dim)

  for (int g = 0; g < n_group; ++g) {
    run_max[g] = -INFINITY;
    run_sum[g] = 0.0f;
  }
  for (size_t i = 0; i < static_cast<size_t>(n_group) * head_dim; ++i) acc[i] = 0.0f;

  const size_t row_bytes = static_cast<size_t>(head_dim) * KV::kBytes;
  const auto* kbase = static_cast<const uint8_t*>(k);
  const auto* vbase = static_cast<const uint8_t*>(v);
  for (int j0 = 0; j0 < n_keys; j0 += kAttentionBlock) {
    const int n_block = n_keys - j0 < kAttentionBlock ? n_keys - j0 : kAttentionBlock;

    // scores of the block for every head of the group
    attention_scores<Ops, KV>(q, q_stride, n_group, head_dim, kbase + j0 * row_bytes, n_block, scale, scores);

    // online softmax: exp weights, running max and sum per head
    for (int g = 0; g < n_group; ++g) {
      correction[g] = softmax_block_update<Ops>(scores + static_cast<size_t>(g) * kAttentionBlock, n_block,
                                                &run_max[g], &run_sum[g]);
    }

    // rescale the accumulators and add the block's weighted values
    attention_values<Ops, KV>(scores, n_group, head_dim, vbase + j0 * row_bytes, n_block, correction, acc);
  }

  for (int g = 0; g < n_group; ++g) {
    const float inv = run_sum[g] > 0.0f ? 1.0f / run_sum[g] : 0.0f;
    for (int i = 0; i < head_dim; ++i) out[static_cast<size_t>(g) * out_stride + i] = acc[static_cast<size_t>(g) * head_dim + i] * inv;
  }
}

template <typename Ops>
void fill_attention_simd(KernelTable& t) {
  t.attention_f32kv = attention_simd<Ops, F32Weights>;
  t.attention_f16kv = attention_simd<Ops, F16Weights>;
}

}  // namespace
}  // namespace geb::kernels
