// Q8_0 and Q4_0 matmul body shared by the SIMD tiers, written once over a quantized operation
// set `Ops` (quant_ops_avx2.h, quant_ops_avx512.h, quant_ops_neon.h) and a weight format (Q8_0Format,
// Q4_0Format below). Layouts are those of MatmulFn in kernels.h and of quant.h.
//
// Each block's weights are unpacked once and multiplied with the int8 activations of up to four
// tokens (register blocking: prefill and batches reuse every weight load four times). The integer
// dot of each block is then scaled by d_weight * d_x into an F32 accumulator. Q4_0 nibbles enter
// the dot unsigned (0..15) and the offset of 8 is taken off at the end through the activations'
// block sums (quant.h). Decode (one token) reads each weight row once per call. Groups of four
// tokens on Q4_0 take a packed path where the Ops provide it (q4_0_rows_times_4_tokens, AVX2 only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "kernels.h"
#include "quant.h"

namespace geb::kernels {
namespace {

struct Q8_0Format {
  static constexpr size_t kBlockBytes = sizeof(block_q8_0);
  static constexpr bool kNibbles = false;
};

struct Q4_0Format {
  static constexpr size_t kBlockBytes = sizeof(block_q4_0);
  static constexpr bool kNibbles = true;
};

// Accumulates N blocks starting at block b of one weight row into acc[0..TN), and for Q4_0 the
// offset term d_w * s_x into offset[0..TN).
template <typename Ops, typename Fmt, int TN, int N>
inline void accumulate_blocks(const uint8_t* row, int b, const int8_t* const* xq, const float* const* xd,
                              const float* const* xs, typename Ops::Vf* acc, typename Ops::Offset* offset) {
  const auto dw = Ops::template load_scales<N>(row + static_cast<size_t>(b) * Fmt::kBlockBytes, Fmt::kBlockBytes);
  if constexpr (Fmt::kNibbles) {
    const auto q = Ops::template load_q4_0_nibbles<N>(row, b);
    for (int t = 0; t < TN; ++t) {
      const auto dot = Ops::dot_unsigned(q, Ops::template load_x<N>(xq[t] + b * kQuantBlock));
      acc[t] = Ops::fmadd(Ops::to_float(dot), Ops::template scale<N>(dw, xd[t] + b), acc[t]);
      offset[t] = Ops::template offset_fmadd<N>(dw, xs[t] + b, offset[t]);
    }
  } else {
    const auto w = Ops::prepare_weights(Ops::template load_q8_0<N>(row, b));
    for (int t = 0; t < TN; ++t) {
      const auto dot = Ops::dot(w, Ops::template load_x<N>(xq[t] + b * kQuantBlock));
      acc[t] = Ops::fmadd(Ops::to_float(dot), Ops::template scale<N>(dw, xd[t] + b), acc[t]);
    }
  }
}

// Dot products of one weight row with TN prepared token rows, written to out[0..TN). Each token
// gets U independent accumulators over consecutive block groups, so with few tokens (decode) the
// loop is not limited by the latency of one FMA chain.
template <typename Ops, typename Fmt, int TN>
void dot_tokens(const uint8_t* row, const int8_t* const* xq, const float* const* xd, const float* const* xs,
                int nb, float* out) {
  constexpr int B = Ops::kBlocks;
  constexpr int U = TN == 1 ? 4 : (TN == 2 ? 2 : 1);
  typename Ops::Vf acc[U][TN];
  typename Ops::Offset offset[U][TN];
  for (int u = 0; u < U; ++u) {
    for (int t = 0; t < TN; ++t) {
      acc[u][t] = Ops::zero();
      offset[u][t] = Ops::offset_zero();
    }
  }
  int b = 0;
  for (; b + U * B <= nb; b += U * B) {
    for (int u = 0; u < U; ++u) accumulate_blocks<Ops, Fmt, TN, B>(row, b + u * B, xq, xd, xs, acc[u], offset[u]);
  }
  for (; b + B <= nb; b += B) accumulate_blocks<Ops, Fmt, TN, B>(row, b, xq, xd, xs, acc[0], offset[0]);
  if constexpr (B > 1) {
    if (b < nb) accumulate_blocks<Ops, Fmt, TN, 1>(row, b, xq, xd, xs, acc[0], offset[0]);
  }
  for (int t = 0; t < TN; ++t) {
    float sum = 0.0f;
    float offset_sum = 0.0f;
    for (int u = 0; u < U; ++u) {
      sum += Ops::hsum(acc[u][t]);
      offset_sum += Ops::offset_sum(offset[u][t]);
    }
    out[t] = Fmt::kNibbles ? sum - 8.0f * offset_sum : sum;
  }
}

// Whether Ops has the packed four-token Q4_0 dot (quant_ops_avx2.h); other tiers lack it.
template <typename Ops, typename = void>
struct HasPackedQ4x4 : std::false_type {};
template <typename Ops>
struct HasPackedQ4x4<Ops, std::void_t<decltype(Ops::kPackedQ4x4)>> : std::bool_constant<Ops::kPackedQ4x4> {};

// Growable float buffer owned by one thread, used instead of std::vector because this header is
// compiled with ISA flags: std::vector's out-of-line members would be weak symbols that the linker
// may hand to baseline code, while this type has internal linkage.
struct ThreadScratch {
  float* data = nullptr;
  size_t capacity = 0;

  ThreadScratch() = default;
  ThreadScratch(const ThreadScratch&) = delete;
  ThreadScratch& operator=(const ThreadScratch&) = delete;
  ~ThreadScratch() { std::free(data); }

  // Returns room for n floats, or nullptr when the allocation fails.
  float* reserve(size_t n) {
    if (n > capacity) {
      void* grown = std::realloc(data, n * sizeof(float));
      if (grown == nullptr) return nullptr;
      data = static_cast<float*>(grown);
      capacity = n;
    }
    return data;
  }
};

// Computes Q4_0 rows times four tokens with the four block dots packed into one vector
// (Ops::dot_unsigned_x4). Per block that takes five integer multiplies instead of eight, and
// one float conversion and two FMAs instead of four conversions and four FMAs plus scale products.
// The token scales are gathered once per call into `scales`. Block b has 8 floats of d_x in
// the lane order of the packed dot, then 8 of 8 * s_x with zeros in the high half (its lanes
// repeat the same tokens). Per row and block, acc += d_w * (dot * d_x - 8 s_x).
// Returns false, having written nothing, when the scale buffer cannot be allocated.
template <typename Ops>
bool q4_0_rows_times_4_tokens(const uint8_t* base, size_t row_stride, const float* const* xd, const float* const* xs,
                              const int8_t* const* xq, int nb, int t0, int r0, int r1, float* y, int ldy) {
  thread_local ThreadScratch scratch;
  float* scales = scratch.reserve(static_cast<size_t>(nb) * 16);
  if (scales == nullptr) return false;
  for (int b = 0; b < nb; ++b) {
    for (int t = 0; t < 4; ++t) {
      scales[b * 16 + t] = scales[b * 16 + 4 + t] = xd[t][b];
      // The offset is taken once per token, from the low-half lane only.
      scales[b * 16 + 8 + t] = 8.0f * xs[t][b];
      scales[b * 16 + 12 + t] = 0.0f;
    }
  }
  const float* sc = scales;
  for (int r = r0; r < r1; ++r) {
    const uint8_t* row = base + static_cast<size_t>(r) * row_stride;
    // Two independent accumulators hide the FMA latency. They are named variables, not an
    // array indexed by b, because GCC kept such an array on the stack.
    auto block = [&](int b, typename Ops::Vf acc) {
      const auto xa = Ops::template load_x<1>(xq[0] + b * kQuantBlock);
      const auto xb = Ops::template load_x<1>(xq[1] + b * kQuantBlock);
      const auto xc = Ops::template load_x<1>(xq[2] + b * kQuantBlock);
      const auto xd4 = Ops::template load_x<1>(xq[3] + b * kQuantBlock);
      const auto dot = Ops::dot_unsigned_x4(Ops::template load_q4_0_nibbles<1>(row, b), xa, xb, xc, xd4);
      const auto v = Ops::fmsub(Ops::to_float(dot), Ops::load_f(sc + b * 16), Ops::load_f(sc + b * 16 + 8));
      const float dw = Ops::template load_scales<1>(row + static_cast<size_t>(b) * Q4_0Format::kBlockBytes, Q4_0Format::kBlockBytes);
      return Ops::fmadd(v, Ops::broadcast_f(dw), acc);
    };
    typename Ops::Vf acc0 = Ops::zero();
    typename Ops::Vf acc1 = Ops::zero();
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
      acc0 = block(b, acc0);
      acc1 = block(b + 1, acc1);
    }
    if (b < nb) acc0 = block(b, acc0);
    float lanes[8];
    Ops::store_f(lanes, Ops::fmadd(acc0, Ops::broadcast_f(1.0f), acc1));
    for (int t = 0; t < 4; ++t) y[static_cast<size_t>(t0 + t) * ldy + r] = lanes[t] + lanes[t + 4];
  }
  return true;
}

template <typename Ops, typename Fmt, int TN>
void rows_times_tokens(const uint8_t* base, size_t row_stride, const PreparedX& x, int k, int t0,
                       int r0, int r1, float* y, int ldy) {
  const int nb = k / kQuantBlock;
  const int8_t* xq[TN];
  const float* xd[TN];
  const float* xs[TN];
  for (int t = 0; t < TN; ++t) {
    const auto* xrow = static_cast<const uint8_t*>(x.data) + static_cast<size_t>(t0 + t) * x.row_bytes;
    xq[t] = reinterpret_cast<const int8_t*>(xrow);
    xd[t] = reinterpret_cast<const float*>(xrow + k);
    xs[t] = xd[t] + nb;
  }
  if constexpr (Fmt::kNibbles && TN == 4 && HasPackedQ4x4<Ops>::value) {
    if (q4_0_rows_times_4_tokens<Ops>(base, row_stride, xd, xs, xq, nb, t0, r0, r1, y, ldy)) return;
  }
  for (int r = r0; r < r1; ++r) {
    float out[TN];
    dot_tokens<Ops, Fmt, TN>(base + static_cast<size_t>(r) * row_stride, xq, xd, xs, nb, out);
    for (int t = 0; t < TN; ++t) y[static_cast<size_t>(t0 + t) * ldy + r] = out[t];
  }
}

// Loop order for prefill: tokens go in chunks whose prepared rows fit in about 256 KiB (the L2
// cache of current cores), and within a chunk the rows go in tiles of about 64 KiB of weights.
// Every group of four tokens in a chunk then reads the tile's weights from L2, so each weight
// byte comes from memory once per chunk instead of once per group of four tokens (32 times for
// a 128-token prompt). Under memory contention from other processes that difference decides the
// speed. Up to four tokens (decode, small batches) read each weight row once per call.
template <typename Ops, typename Fmt>
void matmul_quant(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0,
                  int r1, float* y, int ldy) {
  const auto* base = static_cast<const uint8_t*>(w);
  const int chunk = std::max(4, static_cast<int>((256 * 1024) / x.row_bytes) / 4 * 4);
  const int tile = n_tokens <= 4 ? r1 - r0 : std::max(1, static_cast<int>((64 * 1024) / row_stride));
  for (int c0 = 0; c0 < n_tokens; c0 += chunk) {
    const int c1 = std::min(n_tokens, c0 + chunk);
    for (int ra = r0; ra < r1; ra += tile) {
      const int rb = std::min(r1, ra + tile);
      int t = c0;
      for (; t + 4 <= c1; t += 4) rows_times_tokens<Ops, Fmt, 4>(base, row_stride, x, k, t, ra, rb, y, ldy);
      switch (c1 - t) {
        case 3: rows_times_tokens<Ops, Fmt, 3>(base, row_stride, x, k, t, ra, rb, y, ldy); break;
        case 2: rows_times_tokens<Ops, Fmt, 2>(base, row_stride, x, k, t, ra, rb, y, ldy); break;
        case 1: rows_times_tokens<Ops, Fmt, 1>(base, row_stride, x, k, t, ra, rb, y, ldy); break;
        default: break;
      }
    }
  }
}

}  // namespace
}  // namespace geb::kernels
