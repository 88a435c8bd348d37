// Scalar reference Q4_0 row-range matmuls, the twins the SIMD tiers are tested against: one over
// block_q4_0 rows (kernels.h), one over the Q4_0x8 repacked layout (quant.h). Activations are
// prepared by prepare_q8_activations (quant.h).
#include <cstring>

#include "kernels.h"
#include "numeric.h"
#include "quant.h"

namespace geb::kernels {
namespace {

// Integer dot of one Q4_0 block's quants (block_q4_0 order) with 32 int8 activations, with the
// offset of 8 applied per element.
int32_t q4_0_block_dot(const uint8_t* qs, const int8_t* xb) {
  int32_t dot = 0;
  for (int j = 0; j < kQuantBlock / 2; ++j) {
    dot += ((qs[j] & 0x0f) - 8) * xb[j];
    dot += ((qs[j] >> 4) - 8) * xb[j + kQuantBlock / 2];
  }
  return dot;
}

void matmul_q4_0(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0,
                 int r1, float* y, int ldy) {
  const int nb = k / kQuantBlock;
  const auto* base = static_cast<const uint8_t*>(w);
  for (int r = r0; r < r1; ++r) {
    const uint8_t* row = base + static_cast<size_t>(r) * row_stride;
    for (int t = 0; t < n_tokens; ++t) {
      const auto* xrow = static_cast<const uint8_t*>(x.data) + static_cast<size_t>(t) * x.row_bytes;
      const auto* xq = reinterpret_cast<const int8_t*>(xrow);
      float sum = 0.0f;
      for (int b = 0; b < nb; ++b) {
        block_q4_0 block;
        std::memcpy(&block, row + static_cast<size_t>(b) * sizeof block, sizeof block);
        float dx;
        std::memcpy(&dx, xrow + k + static_cast<size_t>(b) * sizeof(float), sizeof dx);
        const int32_t dot = q4_0_block_dot(block.qs, xq + b * kQuantBlock);
        sum += half_to_float(block.d) * dx * static_cast<float>(dot);
      }
      y[static_cast<size_t>(t) * ldy + r] = sum;
    }
  }
}

}  // namespace

void matmul_q4_0x8_scalar(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0, int r1,
                          float* y, int ldy) {
  const int nb = k / kQuantBlock;
  const auto* base = static_cast<const uint8_t*>(w);
  for (int r = r0; r < r1; ++r) {
    const int i = r % kRepackRows;
    const uint8_t* group = base + static_cast<size_t>(r / kRepackRows) * kRepackRows * row_stride;
    for (int t = 0; t < n_tokens; ++t) {
      const auto* xrow = static_cast<const uint8_t*>(x.data) + static_cast<size_t>(t) * x.row_bytes;
      const auto* xq = reinterpret_cast<const int8_t*>(xrow);
      float sum = 0.0f;
      for (int b = 0; b < nb; ++b) {
        const uint8_t* block = group + static_cast<size_t>(b) * kQ4_0x8BlockBytes;
        uint16_t d;
        std::memcpy(&d, block + 2 * i, 2);
        float dx;
        std::memcpy(&dx, xrow + k + static_cast<size_t>(b) * sizeof(float), sizeof dx);
        // gather the row's 16 quant bytes back into block_q4_0 order
        uint8_t qs[kQuantBlock / 2];
        for (int c = 0; c < 4; ++c) std::memcpy(qs + 4 * c, block + 16 + 32 * c + 4 * i, 4);
        const int32_t dot = q4_0_block_dot(qs, xq + b * kQuantBlock);
        sum += half_to_float(d) * dx * static_cast<float>(dot);
      }
      y[static_cast<size_t>(t) * ldy + r] = sum;
    }
  }
}

void fill_matmul_q4_0_scalar(KernelTable& t) {
  t.matmul[static_cast<int>(WeightType::Q4_0)] = matmul_q4_0;
  t.prepare[static_cast<int>(WeightType::Q4_0)] = prepare_q8_activations;
}

}  // namespace geb::kernels
