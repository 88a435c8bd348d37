// Layout of activations prepared for the quantized matmuls (Q8_0 and Q4_0 weights), and the
// scalar preparation step every tier shares. The block structs themselves are in kernels.h.
//
// One prepared token row of k activations (k a multiple of kQuantBlock, nb = k / 32) is
//   int8_t qs[k]   x[i] quantized to [-127, 127] with the scale of its 32-element block
//   float  d[nb]   block scales: x[32 b + i] ~= d[b] * qs[32 b + i]
//   float  s[nb]   d[b] * (sum of the block's qs), for Q4_0's offset of 8 (see below)
// followed by zero padding up to a multiple of 64 bytes, so every row starts cache-line aligned
// when the buffer does. The weight kernels multiply int8 by int8 and scale each block's integer
// sum once by d_weight * d_x. The SIMD Q4_0 kernels multiply the unsigned nibbles q directly and
// subtract the offset afterwards: sum (q - 8) x = sum q x - 8 sum x, and the last sum is s.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels.h"

namespace geb::kernels {

// Bytes of one prepared row of k activations (k a multiple of kQuantBlock).
constexpr size_t q8_activation_row_bytes(int k) {
  const size_t raw = static_cast<size_t>(k) + 8 * static_cast<size_t>(k / kQuantBlock);
  return (raw + 63) / 64 * 64;
}

// Quantizes n_tokens rows of k F32 activations (row-major, stride k) into the layout above.
// `out` has room for n_tokens * q8_activation_row_bytes(k) bytes. Scales are amax / 127 per
// block and values round to nearest, ties to even. Non-finite inputs give unspecified but
// in-range values. Defined in matmul_q8_0_scalar.cpp. The AVX2 tier uses
// prepare_q8_activations_avx2, which writes the same bytes, and the other tiers use this version.
// NOTE: one rule on every tier still gives tier-dependent int8 values. The F32 kernels before a
// matmul sum in a tier-specific order, so a value within that noise of a boundary (k + 1/2 steps)
// can round either way. Such a flip, with the flips it causes downstream, moved quantized logits
// by up to 0.6% of the largest logit in our runs on geb-tiny and llama-tiny. geb-tiny flips
// most, at exact layer-0 ties from its Q8_0 token embedding and BF16 norm weights
// (tests/quant-tiers.test.ts).
void prepare_q8_activations(const float* x, int k, int n_tokens, void* out);

// prepare_q8_activations vectorized with AVX2 (quant_prepare_avx2.h), bit-identical to it. Both
// AVX2 quantized fillers use this one function, so the engine can see that a Q8_0 and a Q4_0
// matmul on the same input share the prepared rows. Defined in matmul_q8_0_avx2.cpp.
#if defined(__x86_64__) || defined(_M_X64)
void prepare_q8_activations_avx2(const float* x, int k, int n_tokens, void* out);
#endif

// Q4_0 and Q8_0 repacked in groups of 8 rows ("Q4_0x8", "Q8_0x8"), the layouts the engine builds
// at load for tiers whose kernel table has a matmul_x8 entry for the type. Rows 8g .. 8g + 7 form
// group g, and group g starts at byte 8 g * row_stride (row_stride = the GGUF row size), so a
// repacked matrix has the size of the original padded to a multiple of 8 rows. Missing rows of
// the last group are zero. A group is nb group-blocks, one per 32-element block b, in block order:
//   uint16_t d[8]          the 8 rows' half scales, row order
//   uint8_t  qs[C][32]     chunk c: bytes 4i .. 4i + 3 are bytes 4c .. 4c + 3 of row i's qs
// with C = 4 for Q4_0 (144-byte group-blocks) and C = 8 for Q8_0 (272 bytes). For Q8_0 a chunk
// contains elements 4c .. 4c + 3 of every row, one row per 32-bit lane. For Q4_0 a chunk's low
// nibbles are elements 4c .. 4c + 3 and its high nibbles elements 16 + 4c .. 16 + 4c + 3. A SIMD
// kernel multiplies such a vector with the 4 matching activations broadcast to every lane, so
// each row's sum builds up in its own lane without horizontal adds, and the 8 scales convert in
// one instruction. Values and bits per weight are those of block_q4_0 and block_q8_0.
// NOTE: only the AVX2 tier has x8 kernels (quant_x8_avx2.h). The AVX-512 and NEON tiers keep the
// GGUF layout, so on those CPUs nothing is repacked.
constexpr int kRepackRows = 8;
constexpr size_t kQ4_0x8BlockBytes = 8 * sizeof(block_q4_0);
constexpr size_t kQ8_0x8BlockBytes = 8 * sizeof(block_q8_0);
static_assert(kQ4_0x8BlockBytes == 16 + 4 * 32, "a Q4_0x8 group-block is 8 scales and 4 chunks of quants");
static_assert(kQ8_0x8BlockBytes == 16 + 8 * 32, "a Q8_0x8 group-block is 8 scales and 8 chunks of quants");

// Bytes of a repacked matrix of `rows` rows of k weights of `type` (Q4_0 or Q8_0): rows rounded
// up to a multiple of 8.
size_t repacked_bytes(WeightType type, int64_t rows, int k);

// Writes groups [g0, g1) of the repacked form of a Q4_0 or Q8_0 matrix (rows, k) whose rows are
// row_stride bytes apart. `dst` is the start of the whole repacked matrix (repacked_bytes).
// Groups are independent, so threads may repack disjoint group ranges at once. Defined in
// matmul_q8_0_scalar.cpp and shared by every tier.
void repack_x8(WeightType type, const void* src, size_t row_stride, int64_t rows, int k, int64_t g0, int64_t g1, void* dst);

// Scalar reference matmuls over repacked matrices, with the MatmulFn contract (w is the repacked
// matrix, row_stride the GGUF row size). Their sums run in the same order as the scalar Q4_0 and
// Q8_0 matmuls, so they agree exactly. The kernel tests compare the SIMD x8 kernels with them.
// No tier's table uses them: a tier without a fast x8 kernel keeps the GGUF layout.
void matmul_q4_0x8_scalar(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0, int r1,
                          float* y, int ldy);
void matmul_q8_0x8_scalar(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0, int r1,
                          float* y, int ldy);

}  // namespace geb::kernels
