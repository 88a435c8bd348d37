// Matmul body shared by the SIMD tiers, written once over an operation set `Ops` and a weight
// loader `WT` (weight_load.h). Layouts are those of MatmulFn in kernels.h.
//
// The work is cut into tiles of R weight rows x T tokens with one vector accumulator per
// (row, token) pair: each weight vector loaded (and widened) once serves T tokens, and each
// activation vector serves R rows. A single token (the decode step) uses tiles of four rows, so
// four independent FMA chains and four weight streams are in flight.
#pragma once

#include <cstdint>

#include "kernels.h"
#include "weight_load.h"

namespace geb::kernels {
namespace {

// Rows and tokens of a prefill tile: 8 accumulators, 2 weight and 4 activation vectors fit the
// 16 AVX2 registers.
constexpr int kTileRows = 2;
constexpr int kTileTokens = 4;
// Rows per tile when a row meets a single token.
constexpr int kDecodeRows = 4;

// out[r * T + t] = dot(rows[r], xs[t]) over k elements.
template <typename Ops, typename WT, int R, int T>
void dot_tile(const uint8_t* const* rows, const float* const* xs, int k, float* out) {
  using V = typename Ops::V;
  constexpr int W = Ops::W;
  V acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = Ops::zero();
  }

  int i = 0;
  for (; i + W <= k; i += W) {
    V w[R];
    for (int r = 0; r < R; ++r) w[r] = WT::template load<Ops>(rows[r] + i * WT::kBytes);
    for (int t = 0; t < T; ++t) {
      const V x = Ops::load(xs[t] + i);
      for (int r = 0; r < R; ++r) acc[r][t] = Ops::fmadd(w[r], x, acc[r][t]);
    }
  }
  if (i < k) {
    const int n = k - i;
    V w[R];
    for (int r = 0; r < R; ++r) w[r] = load_weights_partial<Ops, WT>(rows[r] + i * WT::kBytes, n);
    for (int t = 0; t < T; ++t) {
      const V x = Ops::load_partial(xs[t] + i, n);
      for (int r = 0; r < R; ++r) acc[r][t] = Ops::fmadd(w[r], x, acc[r][t]);
    }
  }

  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) out[r * T + t] = Ops::hsum(acc[r][t]);
  }
}

// Runs one tile at rows [r, r + R) and tokens [t, t + T) and stores it into y.
template <typename Ops, typename WT, int R, int T>
void run_tile(const uint8_t* base, size_t row_stride, const uint8_t* xbase, size_t x_row_bytes, int k, int r, int t,
              float* y, int ldy) {
  const uint8_t* rows[R];
  const float* xs[T];
  for (int j = 0; j < R; ++j) rows[j] = base + static_cast<size_t>(r + j) * row_stride;
  for (int j = 0; j < T; ++j) xs[j] = reinterpret_cast<const float*>(xbase + static_cast<size_t>(t + j) * x_row_bytes);
  float out[R * T];
  dot_tile<Ops, WT, R, T>(rows, xs, k, out);
  for (int a = 0; a < R; ++a) {
    for (int b = 0; b < T; ++b) y[static_cast<size_t>(t + b) * ldy + r + a] = out[a * T + b];
  }
}

template <typename Ops, typename WT>
void matmul_simd(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0, int r1, float* y,
                 int ldy) {
  const auto* base = static_cast<const uint8_t*>(w);
  const auto* xbase = static_cast<const uint8_t*>(x.data);
  const size_t xb = x.row_bytes;

  if (n_tokens == 1) {
    int r = r0;
    for (; r + kDecodeRows <= r1; r += kDecodeRows) run_tile<Ops, WT, kDecodeRows, 1>(base, row_stride, xbase, xb, k, r, 0, y, ldy);
    for (; r < r1; ++r) run_tile<Ops, WT, 1, 1>(base, row_stride, xbase, xb, k, r, 0, y, ldy);
    return;
  }

  int r = r0;
  for (; r + kTileRows <= r1; r += kTileRows) {
    int t = 0;
    for (; t + kTileTokens <= n_tokens; t += kTileTokens) {
      run_tile<Ops, WT, kTileRows, kTileTokens>(base, row_stride, xbase, xb, k, r, t, y, ldy);
    }
    for (; t < n_tokens; ++t) run_tile<Ops, WT, kTileRows, 1>(base, row_stride, xbase, xb, k, r, t, y, ldy);
  }
  for (; r < r1; ++r) {
    int t = 0;
    for (; t + kTileTokens <= n_tokens; t += kTileTokens) run_tile<Ops, WT, 1, kTileTokens>(base, row_stride, xbase, xb, k, r, t, y, ldy);
    for (; t < n_tokens; ++t) run_tile<Ops, WT, 1, 1>(base, row_stride, xbase, xb, k, r, t, y, ldy);
  }
}

template <typename Ops>
void fill_matmul_simd(KernelTable& t) {
  t.matmul[static_cast<int>(WeightType::F32)] = matmul_simd<Ops, F32Weights>;
  t.matmul[static_cast<int>(WeightType::F16)] = matmul_simd<Ops, F16Weights>;
  t.matmul[static_cast<int>(WeightType::BF16)] = matmul_simd<Ops, Bf16Weights>;
}

}  // namespace
}  // namespace geb::kernels
