// AArch64 NEON integer operations for the quantized matmul body (matmul_quant_body.h). One
// 32-weight block is two 128-bit registers of int8. The block dot product depends on the flags
// of the including file: built with the dot-product extension (*_neondot.cpp,
// __ARM_FEATURE_DOTPROD) it uses SDOT; built for plain Armv8-A (*_neon.cpp) it uses widening
// int8 multiplies (SMULL/SMLAL) and pairwise int16 -> int32 additions. Include only from those
// files.
#pragma once

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "kernels.h"

namespace geb::kernels {
namespace {

struct QuantNeonOps {
  using Vf = float32x4_t;
  static constexpr int kBlocks = 1;

  // 32 int8 values of one block in element order: lo = elements 0..15, hi = 16..31.
  struct Bytes {
    int8x16_t lo;
    int8x16_t hi;
  };
  using Weights = Bytes;

  static Vf zero() { return vdupq_n_f32(0.0f); }
  static Vf to_float(int32x4_t v) { return vcvtq_f32_s32(v); }
  static Vf fmadd(Vf a, Vf b, Vf c) { return vfmaq_f32(c, a, b); }  // a * b + c
  static float hsum(Vf v) { return vaddvq_f32(v); }

  template <int N>
  static Bytes load_x(const int8_t* p) {
    static_assert(N == 1, "one block per NEON register pair");
    return {vld1q_s8(p), vld1q_s8(p + 16)};
  }

  template <int N>
  static Bytes load_q8_0(const uint8_t* row, int b) {
    static_assert(N == 1, "one block per NEON register pair");
    const auto* p = reinterpret_cast<const int8_t*>(row + static_cast<size_t>(b) * sizeof(block_q8_0) + 2);
    return {vld1q_s8(p), vld1q_s8(p + 16)};
  }

  // One Q4_0 block as 32 unsigned nibbles q (0..15) in element order: the low nibbles of the
  // 16 bytes are elements 0..15, the high nibbles elements 16..31.
  template <int N>
  static Bytes load_q4_0_nibbles(const uint8_t* row, int b) {
    static_assert(N == 1, "one block per NEON register pair");
    const uint8x16_t q = vld1q_u8(row + static_cast<size_t>(b) * sizeof(block_q4_0) + 2);
    return {vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), vreinterpretq_s8_u8(vshrq_n_u8(q, 4))};
  }

  static Weights prepare_weights(Bytes w) { return w; }

  // Per int32 lane: the sum of w[j] * x[j] over a quarter of the block (which quarter is
  // irrelevant, because only the lane total is used).
  static int32x4_t dot(const Weights& w, const Bytes& x) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w.lo, x.lo), w.hi, x.hi);
#else
    // Each int16 lane adds two products of at most 128 * 127 in magnitude, so |sum| <= 32512
    // stays inside int16.
    int16x8_t a = vmull_s8(vget_low_s8(w.lo), vget_low_s8(x.lo));
    a = vmlal_s8(a, vget_low_s8(w.hi), vget_low_s8(x.hi));
    int16x8_t b = vmull_high_s8(w.lo, x.lo);
    b = vmlal_high_s8(b, w.hi, x.hi);
    return vpadalq_s16(vpaddlq_s16(a), b);
#endif
  }

  // Nibbles 0..15 are valid signed int8, so the signed dot product serves unchanged.
  static int32x4_t dot_unsigned(const Bytes& q, const Bytes& x) { return dot(q, x); }

  // Running sum of d_w * s_x (Q4_0's offset term), one float per token.
  using Offset = float;
  static Offset offset_zero() { return 0.0f; }
  template <int N>
  static Offset offset_fmadd(float dw, const float* s, Offset sum) { return sum + dw * *s; }
  static float offset_sum(Offset sum) { return sum; }

  template <int N>
  static float load_scales(const uint8_t* block, size_t /*block_bytes*/) {
    uint16_t d;
    std::memcpy(&d, block, 2);
    // FCVTL widens IEEE halves in base Armv8-A, with no branch for subnormals.
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(d))), 0);
  }

  template <int N>
  static Vf scale(float dw, const float* dx) { return vdupq_n_f32(dw * *dx); }
};

}  // namespace
}  // namespace geb::kernels
