// Scalar reference Q4_0 row-range matmul, the twin the SIMD tiers are tested against. Weights
// are block_q4_0 (kernels.h); activations are prepared by prepare_q8_activations (quant.h).
#include <cstring>

#include "kernels.h"
#include "numeric.h"
#include "quant.h"

namespace geb::kernels {
namespace {

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
        const int8_t* xb = xq + b * kQuantBlock;
        int32_t dot = 0;
        for (int j = 0; j < kQuantBlock / 2; ++j) {
          dot += ((block.qs[j] & 0x0f) - 8) * xb[j];
          dot += ((block.qs[j] >> 4) - 8) * xb[j + kQuantBlock / 2];
        }
        sum += half_to_float(block.d) * dx * static_cast<float>(dot);
      }
      y[static_cast<size_t>(t) * ldy + r] = sum;
    }
  }
}

}  // namespace

void fill_matmul_q4_0_scalar(KernelTable& t) {
  t.matmul[static_cast<int>(WeightType::Q4_0)] = matmul_q4_0;
  t.prepare[static_cast<int>(WeightType::Q4_0)] = prepare_q8_activations;
}

}  // namespace geb::kernels
