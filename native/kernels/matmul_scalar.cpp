// Scalar reference matmul and row dequantization for every weight type. The SIMD tiers are tested
// against these, so they stay plain: one F32 accumulator per output, elements in index order.
#include <cstring>

#include "kernels.h"
#include "numeric.h"

namespace geb::kernels {

size_t row_bytes(WeightType type, int64_t k) {
  switch (type) {
    case WeightType::F32: return static_cast<size_t>(k) * 4;
    case WeightType::F16:
    case WeightType::BF16: return static_cast<size_t>(k) * 2;
    case WeightType::Q8_0: return static_cast<size_t>(k / kQuantBlock) * sizeof(block_q8_0);
    case WeightType::Q4_0: return static_cast<size_t>(k / kQuantBlock) * sizeof(block_q4_0);
  }
  return 0;
}

namespace {



template <typename Convert>
void matmul_rows(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0,
                 int r1, float* y, int ldy, Convert convert) {
  const auto* base = static_cast<const uint8_t*>(w);
  for (int r = r0; r < r1; ++r) {
    const uint8_t* row = base + static_cast<size_t>(r) * row_stride;
    for (int t = 0; t < n_tokens; ++t) {
      const auto* xt = reinterpret_cast<const float*>(static_cast<const uint8_t*>(x.data) +
                                                      static_cast<size_t>(t) * x.row_bytes);
      float sum = 0.0f;
      for (int i = 0; i < k; ++i) sum += convert(row, i) * xt[i];
      y[static_cast<size_t>(t) * ldy + r] = sum;
    }
  }
}

// Weight rows inside a mapped file need not be aligned, so every element is read with memcpy.
inline float read_f32(const uint8_t* row, int i) {
  float v;
  std::memcpy(&v, row + static_cast<size_t>(i) * 4, 4);
  return v;
}
inline uint16_t read_u16(const uint8_t* row, int i) {
  uint16_t v;
  std::memcpy(&v, row + static_cast<size_t>(i) * 2, 2);
  return v;
}

void matmul_f32(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0,
                int r1, float* y, int ldy) {
  matmul_rows(w, row_stride, x, k, n_tokens, r0, r1, y, ldy, read_f32);
}

void matmul_f16(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0,
                int r1, float* y, int ldy) {
  matmul_rows(w, row_stride, x, k, n_tokens, r0, r1, y, ldy,
              [](const uint8_t* row, int i) { return half_to_float(read_u16(row, i)); });
}

void matmul_bf16(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0,
                 int r1, float* y, int ldy) {
  matmul_rows(w, row_stride, x, k, n_tokens, r0, r1, y, ldy,
              [](const uint8_t* row, int i) { return bf16_to_float(read_u16(row, i)); });
}

void dequantize_f32(const void* w, int k, float* out) { std::memcpy(out, w, static_cast<size_t>(k) * 4); }

void dequantize_f16(const void* w, int k, float* out) {
  const auto* row = static_cast<const uint8_t*>(w);
  for (int i = 0; i < k; ++i) out[i] = half_to_float(read_u16(row, i));
}

void dequantize_bf16(const void* w, int k, float* out) {
  const auto* row = static_cast<const uint8_t*>(w);
  for (int i = 0; i < k; ++i) out[i] = bf16_to_float(read_u16(row, i));
}

void dequantize_q8_0(const void* w, int k, float* out) {
  const auto* row = static_cast<const uint8_t*>(w);
  for (int b = 0; b < k / kQuantBlock; ++b) {
    block_q8_0 block;
    std::memcpy(&block, row + static_cast<size_t>(b) * sizeof block, sizeof block);
    const float d = half_to_float(block.d);
    for (int i = 0; i < kQuantBlock; ++i) out[b * kQuantBlock + i] = d * static_cast<float>(block.qs[i]);
  }
}

void dequantize_q4_0(const void* w, int k, float* out) {
  const auto* row = static_cast<const uint8_t*>(w);
  for (int b = 0; b < k / kQuantBlock; ++b) {
    block_q4_0 block;
    std::memcpy(&block, row + static_cast<size_t>(b) * sizeof block, sizeof block);
    const float d = half_to_float(block.d);
    float* o = out + b * kQuantBlock;
    for (int j = 0; j < kQuantBlock / 2; ++j) {
      o[j] = d * static_cast<float>((block.qs[j] & 0x0f) - 8);
      o[j + kQuantBlock / 2] = d * static_cast<float>((block.qs[j] >> 4) - 8);
    }
  }
}

}  // namespace

void fill_matmul_scalar(KernelTable& t) {
  t.matmul[static_cast<int>(WeightType::F32)] = matmul_f32;
  t.matmul[static_cast<int>(WeightType::F16)] = matmul_f16;
  t.matmul[static_cast<int>(WeightType::BF16)] = matmul_bf16;
  // Q8_0 and Q4_0 come from fill_matmul_q8_0_* / fill_matmul_q4_0_*, which run after this.
  t.matmul[static_cast<int>(WeightType::Q8_0)] = nullptr;
  t.matmul[static_cast<int>(WeightType::Q4_0)] = nullptr;
  for (PrepareFn& p : t.prepare) p = nullptr;

  t.dequantize_row[static_cast<int>(WeightType::F32)] = dequantize_f32;
  t.dequantize_row[static_cast<int>(WeightType::F16)] = dequantize_f16;
  t.dequantize_row[static_cast<int>(WeightType::BF16)] = dequantize_bf16;
  t.dequantize_row[static_cast<int>(WeightType::Q8_0)] = dequantize_q8_0;
  t.dequantize_row[static_cast<int>(WeightType::Q4_0)] = dequantize_q4_0;
}

}  // namespace geb::kernels
