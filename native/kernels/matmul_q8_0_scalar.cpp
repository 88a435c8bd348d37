// Scalar reference for Q8_0 weights. Every tier shares the activation preparation and the
// repacking in groups of 8 rows defined here. The engine sizes its scratch with the prepared row
// size, and the SIMD tiers are tested against the Q8_0 row-range matmuls (GGUF and Q8_0x8
// layouts). Layouts are in kernels.h (block_q8_0) and quant.h (prepared activations, repacked weights).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels.h"
#include "numeric.h"
#include "quant.h"

namespace geb::kernels {

size_t prepared_row_bytes(WeightType type, int k) {
  if (type == WeightType::Q8_0 || type == WeightType::Q4_0) return q8_activation_row_bytes(k);
  return static_cast<size_t>(k) * sizeof(float);
}

void prepare_q8_activations(const float* x, int k, int n_tokens, void* out) {
  const int nb = k / kQuantBlock;
  const size_t row_bytes = q8_activation_row_bytes(k);
  for (int t = 0; t < n_tokens; ++t) {
    const float* xt = x + static_cast<size_t>(t) * k;
    auto* row = static_cast<uint8_t*>(out) + static_cast<size_t>(t) * row_bytes;
    auto* qs = reinterpret_cast<int8_t*>(row);
    uint8_t* scales = row + k;
    uint8_t* sums = scales + static_cast<size_t>(nb) * sizeof(float);
    for (int b = 0; b < nb; ++b) {
      const float* xb = xt + b * kQuantBlock;
      float amax = 0.0f;
      for (int i = 0; i < kQuantBlock; ++i) amax = std::max(amax, std::fabs(xb[i]));
      const float d = amax / 127.0f;
      const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
      int sum = 0;
      for (int i = 0; i < kQuantBlock; ++i) {
        // fmin/fmax also map NaN to a bound, so the cast below is always defined
        const float v = std::fmin(std::fmax(std::nearbyint(xb[i] * inverse), -127.0f), 127.0f);
        qs[b * kQuantBlock + i] = static_cast<int8_t>(v);
        sum += static_cast<int>(v);
      }
      const float scaled_sum = d * static_cast<float>(sum);
      std::memcpy(scales + static_cast<size_t>(b) * sizeof(float), &d, sizeof d);
      std::memcpy(sums + static_cast<size_t>(b) * sizeof(float), &scaled_sum, sizeof scaled_sum);
    }
    const size_t used = static_cast<size_t>(k) + 2 * static_cast<size_t>(nb) * sizeof(float);
    std::memset(row + used, 0, row_bytes - used);
  }
}

size_t repacked_bytes(WeightType type, int64_t rows, int k) {
  return static_cast<size_t>((rows + kRepackRows - 1) / kRepackRows * kRepackRows) * row_bytes(type, k);
}

void repack_x8(WeightType type, const void* src, size_t row_stride, int64_t rows, int k, int64_t g0, int64_t g1, void* dst) {
  const int nb = k / kQuantBlock;
  const size_t block_bytes = type == WeightType::Q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
  const size_t group_block_bytes = kRepackRows * block_bytes;
  const int chunks = static_cast<int>((block_bytes - 2) / 4);
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* group = out + static_cast<size_t>(g) * nb * group_block_bytes;
    for (int i = 0; i < kRepackRows; ++i) {
      const int64_t r = g * kRepackRows + i;
      for (int b = 0; b < nb; ++b) {
        uint8_t* block = group + static_cast<size_t>(b) * group_block_bytes;
        if (r >= rows) {
          // a zero scale makes the padding rows' values zero whatever the quants
          std::memset(block + 2 * i, 0, 2);
          for (int c = 0; c < chunks; ++c) std::memset(block + 16 + 32 * c + 4 * i, 0, 4);
          continue;
        }
        const uint8_t* from = in + static_cast<size_t>(r) * row_stride + static_cast<size_t>(b) * block_bytes;
        std::memcpy(block + 2 * i, from, 2);
        for (int c = 0; c < chunks; ++c) std::memcpy(block + 16 + 32 * c + 4 * i, from + 2 + 4 * c, 4);
      }
    }
  }
}

namespace {

// y[t][r] = sum over blocks of d_w * d_x * (integer dot of the block), blocks in order.
void matmul_q8_0(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0,
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
        block_q8_0 block;
        std::memcpy(&block, row + static_cast<size_t>(b) * sizeof block, sizeof block);
        float dx;
        std::memcpy(&dx, xrow + k + static_cast<size_t>(b) * sizeof(float), sizeof dx);
        int32_t dot = 0;
        for (int i = 0; i < kQuantBlock; ++i) dot += block.qs[i] * xq[b * kQuantBlock + i];
        sum += half_to_float(block.d) * dx * static_cast<float>(dot);
      }
      y[static_cast<size_t>(t) * ldy + r] = sum;
    }
  }
}

}  // namespace

void matmul_q8_0x8_scalar(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0, int r1,
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
        const uint8_t* block = group + static_cast<size_t>(b) * kQ8_0x8BlockBytes;
        uint16_t d;
        std::memcpy(&d, block + 2 * i, 2);
        float dx;
        std::memcpy(&dx, xrow + k + static_cast<size_t>(b) * sizeof(float), sizeof dx);
        int32_t dot = 0;
        for (int e = 0; e < kQuantBlock; ++e) {
          const auto q = static_cast<int8_t>(block[16 + 32 * (e / 4) + 4 * i + e % 4]);
          dot += q * xq[b * kQuantBlock + e];
        }
        sum += half_to_float(d) * dx * static_cast<float>(dot);
      }
      y[static_cast<size_t>(t) * ldy + r] = sum;
    }
  }
}

void fill_matmul_q8_0_scalar(KernelTable& t) {
  t.matmul[static_cast<int>(WeightType::Q8_0)] = matmul_q8_0;
  t.prepare[static_cast<int>(WeightType::Q8_0)] = prepare_q8_activations;
}

}  // namespace geb::kernels
