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
// in-range values. Defined in matmul_q8_0_scalar.cpp. Every tier uses this scalar version
// because it costs microseconds per token next to milliseconds of weight streaming.
void prepare_q8_activations(const float* x, int k, int n_tokens, void* out);

}  // namespace geb::kernels
