// Matmul body shared by the SIMD tiers, written once over an operation set `Ops` and a weight
// loader `WT` (weight_load.h). Layouts are those of MatmulFn in kernels.h.
//
// Several tokens (prefill, batches) run as a register-blocked GEMM. A tile of R weight rows x T
// tokens keeps one vector accumulator per (row, token) pair along k. Each weight vector is then
// loaded and widened to F32 once for T tokens, and each activation vector serves R rows.
// k is cut into panels and the rows into blocks. The T tokens' activations of one panel stay in
// L1 while the rows of a block pass over them, and the block stays in L2 while every token tile
// passes over it. So each weight is read from memory once per call, whatever the token count.
//
// A single token (the decode step) is bound by memory bandwidth: tiles of eight rows over the
// whole of k keep eight weight streams and eight independent FMA chains in flight.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels.h"
#include "weight_load.h"

namespace geb::kernels {
namespace {

// Tile shape of the GEMM for an ISA with `registers` vector registers. R * T accumulators, R
// weight vectors and one activation vector must fit, or the compiler spills inside the k loop.
// 16 registers (AVX2): 3 x 4 = 12 accumulators + 3 + 1. 32 registers (AVX-512, AArch64):
// 4 x 6 = 24 accumulators + 4 + 1. On Zen 3 the 3 x 4 tile is limited by its 7 loads per 12
// FMAs: 2 x 6 (8 loads) measured about 20% slower.
template <int registers>
struct GemmTile;
template <>
struct GemmTile<16> {
  static constexpr int kRows = 3;
  static constexpr int kTokens = 4;
};
template <>
struct GemmTile<32> {
  static constexpr int kRows = 4;
  static constexpr int kTokens = 6;
};

// Rows per tile when a row meets a single token. Eight streams read about 10% more bandwidth than
// four on one Zen 3 core (a measurement on a loaded machine, so an estimate).
constexpr int kDecodeRows = 8;

// Elements of k per panel, so one tile's activations (T tokens x panel floats, 16 KiB for AVX2)
// stay in L1. Shorter panels spend more on horizontal sums and on reading back y.
constexpr int kPanel = 1024;
// Bytes of weights per row block (rows x panel), meant to stay in L2 while every token tile
// passes over them: a quarter of a 512 KiB L2, the smallest of the cores we target.
constexpr int kRowBlockBytes = 128 * 1024;

// Elements of k per panel: k cut into the fewest panels of at most kPanel elements, of about
// equal length and whole vectors, so no panel is left short.
template <int W>
int panel_length(int k) {
  static_assert(kPanel % W == 0, "panels must be whole vectors");
  const int n_panels = (k + kPanel - 1) / kPanel;
  const int panel = (k + n_panels - 1) / n_panels;
  return (panel + W - 1) / W * W;
}

// Rows per block for a panel of `panel_bytes` bytes per row: a multiple of the tile's R.
template <int R>
int row_block(int panel_bytes) {
  const int rows = kRowBlockBytes / panel_bytes;
  return rows < R ? R : rows - rows % R;
}

// Dot products of R weight rows with T activation rows over n elements:
//   y[t * ldy + r] (+)= sum_i W(r, i) * x(t, i)   for r < R, t < T,
// where row r of W starts at w + r * row_stride and token t at x + t * ldx. The sums replace y
// unless `accumulate` is set, in which case they are added to it (the later panels of k).
template <typename Ops, typename WT, int R, int T>
void dot_tile(const uint8_t* w, size_t row_stride, const float* x, size_t ldx, int n, bool accumulate, float* y,
              size_t ldy) {
  using V = typename Ops::V;
  constexpr int W = Ops::W;
  V acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = Ops::zero();
  }

  int i = 0;
  for (; i + W <= n; i += W) {
    V wv[R];
    for (int r = 0; r < R; ++r) wv[r] = WT::template load<Ops>(w + r * row_stride + i * WT::kBytes);
    for (int t = 0; t < T; ++t) {
      const V xv = Ops::load(x + t * ldx + i);
      for (int r = 0; r < R; ++r) acc[r][t] = Ops::fmadd(wv[r], xv, acc[r][t]);
    }
  }
  if (i < n) {
    const int rest = n - i;
    V wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load_weights_partial<Ops, WT>(w + r * row_stride + i * WT::kBytes, rest);
    for (int t = 0; t < T; ++t) {
      const V xv = Ops::load_partial(x + t * ldx + i, rest);
      for (int r = 0; r < R; ++r) acc[r][t] = Ops::fmadd(wv[r], xv, acc[r][t]);
    }
  }

  for (int t = 0; t < T; ++t) {
    for (int r = 0; r < R; ++r) {
      const float sum = Ops::hsum(acc[r][t]);
      float& out = y[t * ldy + r];
      out = accumulate ? out + sum : sum;
    }
  }
}

// Dot products of T tokens with the n_rows rows starting at `w`, R rows per tile and the last
// rows one at a time. The caller keeps n_rows small enough that these rows (one panel of k)
// stay in L2 while the T tokens' activations are read from L1.
template <typename Ops, typename WT, int R, int T>
void dot_row_block(const uint8_t* w, size_t row_stride, int n_rows, const float* x, size_t ldx, int n, bool accumulate,
                   float* y, size_t ldy) {
  int r = 0;
  for (; r + R <= n_rows; r += R) dot_tile<Ops, WT, R, T>(w + r * row_stride, row_stride, x, ldx, n, accumulate, y + r, ldy);
  for (; r < n_rows; ++r) dot_tile<Ops, WT, 1, T>(w + r * row_stride, row_stride, x, ldx, n, accumulate, y + r, ldy);
}

// One panel of k for a block of rows and every token: T tokens at a time, then the remaining
// tokens as one narrower tile.
template <typename Ops, typename WT, int R, int T>
void dot_panel(const uint8_t* w, size_t row_stride, int n_rows, const float* x, size_t ldx, int n_tokens, int n,
               bool accumulate, float* y, size_t ldy) {
  int t = 0;
  for (; t + T <= n_tokens; t += T) {
    dot_row_block<Ops, WT, R, T>(w, row_stride, n_rows, x + t * ldx, ldx, n, accumulate, y + t * ldy, ldy);
  }
  const int rest = n_tokens - t;
  if (rest == 0) return;
  x += t * ldx;
  y += t * ldy;
  // T is at most 6, so the remainder takes one of these.
  switch (rest) {
    case 1: dot_row_block<Ops, WT, R, 1>(w, row_stride, n_rows, x, ldx, n, accumulate, y, ldy); break;
    case 2: dot_row_block<Ops, WT, R, 2>(w, row_stride, n_rows, x, ldx, n, accumulate, y, ldy); break;
    case 3: dot_row_block<Ops, WT, R, 3>(w, row_stride, n_rows, x, ldx, n, accumulate, y, ldy); break;
    case 4: dot_row_block<Ops, WT, R, 4>(w, row_stride, n_rows, x, ldx, n, accumulate, y, ldy); break;
    default: dot_row_block<Ops, WT, R, 5>(w, row_stride, n_rows, x, ldx, n, accumulate, y, ldy); break;
  }
}

template <typename Ops, typename WT>
void matmul_simd(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0, int r1, float* y,
                 int ldy) {
  const auto* base = static_cast<const uint8_t*>(w);
  const auto* xf = static_cast<const float*>(x.data);
  const size_t ldx = x.row_bytes / sizeof(float);
  const size_t ld = static_cast<size_t>(ldy);

  if (n_tokens == 1) {
    int r = r0;
    for (; r + kDecodeRows <= r1; r += kDecodeRows) {
      dot_tile<Ops, WT, kDecodeRows, 1>(base + static_cast<size_t>(r) * row_stride, row_stride, xf, ldx, k, false, y + r, ld);
    }
    for (; r < r1; ++r) dot_tile<Ops, WT, 1, 1>(base + static_cast<size_t>(r) * row_stride, row_stride, xf, ldx, k, false, y + r, ld);
    return;
  }

  using Tile = GemmTile<Ops::kRegisters>;
  constexpr int R = Tile::kRows;
  constexpr int T = Tile::kTokens;
  const int panel = panel_length<Ops::W>(k);
  const int block = row_block<R>(panel * static_cast<int>(WT::kBytes));
  for (int k0 = 0; k0 < k; k0 += panel) {
    const int n = k - k0 < panel ? k - k0 : panel;
    const bool accumulate = k0 > 0;
    const uint8_t* wk = base + static_cast<size_t>(k0) * WT::kBytes;
    for (int r = r0; r < r1; r += block) {
      const int n_rows = r1 - r < block ? r1 - r : block;
      dot_panel<Ops, WT, R, T>(wk + static_cast<size_t>(r) * row_stride, row_stride, n_rows, xf + k0, ldx, n_tokens, n,
                               accumulate, y + r, ld);
    }
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
