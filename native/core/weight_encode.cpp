// SPDX-License-Identifier: MIT
// Weight re-encoding (see weight_encode.h). Each step mirrors lib/formats/tensor-encode.ts,
// including where JS computes in double precision: block scales are divided in double and rounded
// to F32 and then to half, and values are multiplied by the scale's inverse in double.
#include "core/weight_encode.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/numeric.h"

namespace geb {
namespace {

using kernels::WeightType;

// Source values in chunks of this many elements go through an F32 buffer.
constexpr size_t kChunk = 4096;

// F32 to bfloat16 bits, rounding to nearest even; NaN stays a quiet NaN.
uint16_t float_to_bf16(float f) {
  const uint32_t bits = kernels::float_to_bits(f);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x7fffffu) != 0) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// JavaScript's Math.round for |x| < 2^31 - 1: the nearest integer, ties toward +infinity.
// Integer conversions and comparisons keep it free of branches and libm calls, because the
// baseline x86-64 build has no inline floor() and mispredicted branches made it slower than V8.
// x - down is exact, so ties are detected exactly.
inline int js_round(double x) {
  int down = static_cast<int>(x);
  down -= static_cast<double>(down) > x;
  return down + (x - static_cast<double>(down) >= 0.5);
}

// Clamps x to [-1e6, 1e6] and maps NaN to `nan_value`, so js_round's conversion cannot
// overflow. Callers clamp the rounded value to a much smaller range, so this changes no result.
inline double bounded(double x, double nan_value) {
  if (x != x) return nan_value;
  return std::max(-1e6, std::min(1e6, x));
}

void decode(WeightType from, const uint8_t* src, size_t n, float* out) {
  switch (from) {
    case WeightType::F32:
      std::memcpy(out, src, n * sizeof(float));
      return;
    case WeightType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = kernels::half_to_float(h);
      }
      return;
    case WeightType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = kernels::bf16_to_float(h);
      }
      return;
    default:
      throw EngineError(ErrorCode::InvalidArgument, "weight re-encoding reads F32, F16 or BF16 values only");
  }
}

// Q8_0: d = amax / 127 rounded to half; q = round-half-away(x / d) clamped to [-127, 127].
void encode_q8_0_block(const float* x, uint8_t* out) {
  float amax = 0.0f;
  bool has_nan = false;
  for (int j = 0; j < 32; ++j) {
    const float magnitude = std::fabs(x[j]);
    has_nan |= magnitude != magnitude;
    if (magnitude > amax) amax = magnitude;
  }
  if (has_nan) {
    // A block with a NaN stores the quiet NaN half 0x7e00 as its scale and zeros.
    const uint16_t nan_bits = 0x7e00;
    std::memcpy(out, &nan_bits, 2);
    std::memset(out + 2, 0, 32);
    return;
  }
  const uint16_t d_bits = kernels::float_to_half(static_cast<float>(static_cast<double>(amax) / 127.0));
  const double d = kernels::half_to_float(d_bits);
  const double inverse = d == 0.0 ? 0.0 : 1.0 / d;
  std::memcpy(out, &d_bits, 2);
  for (int j = 0; j < 32; ++j) {
    const double v = static_cast<double>(x[j]) * inverse;
    // NaN (an infinite weight times an infinite scale's zero inverse) stores 0, as JS's setInt8(NaN) does.
    const double magnitude = bounded(std::fabs(v), 0.0);
    const int rounded = std::min(127, js_round(magnitude));
    out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(v < 0.0 ? -rounded : rounded));
  }
}

// Q4_0: the value of largest magnitude (the first one on ties) maps to -8, so d = extreme / -8.
void encode_q4_0_block(const float* x, uint8_t* out) {
  float extreme = 0.0f;
  for (int j = 0; j < 32; ++j) {
    if (std::fabs(x[j]) > std::fabs(extreme)) extreme = x[j];
  }
  const uint16_t d_bits = kernels::float_to_half(static_cast<float>(static_cast<double>(extreme) / -8.0));
  const double d = kernels::half_to_float(d_bits);
  const double inverse = d == 0.0 ? 0.0 : 1.0 / d;
  std::memcpy(out, &d_bits, 2);
  auto nibble = [inverse](float value) -> uint8_t {
    // NaN stores nibble 0, as JS's `NaN | 0` does.
    const int q = js_round(bounded(static_cast<double>(value) * inverse, -1e6)) + 8;
    return static_cast<uint8_t>(std::max(0, std::min(15, q)));
  };
  for (int j = 0; j < 16; ++j) out[2 + j] = static_cast<uint8_t>(nibble(x[j]) | (nibble(x[j + 16]) << 4));
}

void encode(const float* x, size_t n, WeightType to, uint8_t* out) {
  switch (to) {
    case WeightType::F32:
      std::memcpy(out, x, n * sizeof(float));
      return;
    case WeightType::F16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = kernels::float_to_half(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case WeightType::BF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = float_to_bf16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case WeightType::Q8_0:
      for (size_t b = 0; b < n / 32; ++b) encode_q8_0_block(x + 32 * b, out + sizeof(kernels::block_q8_0) * b);
      return;
    case WeightType::Q4_0:
      for (size_t b = 0; b < n / 32; ++b) encode_q4_0_block(x + 32 * b, out + sizeof(kernels::block_q4_0) * b);
      return;
  }
}

}  // namespace

void encode_weights(WeightType from, const void* src, size_t n, WeightType to, void* dst) {
  const bool quantized = to == WeightType::Q8_0 || to == WeightType::Q4_0;
  if (quantized && n % kernels::kQuantBlock != 0) {
    throw EngineError(ErrorCode::InvalidArgument,
                      "cannot encode " + std::to_string(n) + " values as a quantized type: the count must be a multiple of 32");
  }
  const size_t in_size = kernels::row_bytes(from, 1);
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  std::vector<float> values(kChunk);
  // kChunk is a multiple of 32, so every chunk but the last holds whole blocks, and so does the
  // last one when n does.
  for (size_t start = 0; start < n; start += kChunk) {
    const size_t count = n - start < kChunk ? n - start : kChunk;
    decode(from, in + start * in_size, count, values.data());
    encode(values.data(), count, to, out + kernels::row_bytes(to, static_cast<int64_t>(start)));
  }
}

}  // namespace geb
