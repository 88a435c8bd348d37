// AArch64 Advanced SIMD (NEON) vector operations that the shared kernel bodies (*_body.h) are
// written against. Include only from *_neon.cpp files. Everything lives in an anonymous
// namespace so no symbol built with these flags can leak to other files.
#pragma once

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "numeric.h"

namespace geb::kernels {
namespace {

struct NeonOps {
  using V = float32x4_t;
  static constexpr int W = 4;  // floats per vector
  static constexpr int kRegisters = 32;  // vector registers (v0-v31), for sizing register tiles

  static V zero() { return vdupq_n_f32(0.0f); }
  static V set1(float v) { return vdupq_n_f32(v); }
  // Byte loads and stores: weight rows inside a mapped file need not be 4-byte aligned.
  static V load(const float* p) { return vreinterpretq_f32_u8(vld1q_u8(reinterpret_cast<const uint8_t*>(p))); }
  static void store(float* p, V v) { vst1q_u8(reinterpret_cast<uint8_t*>(p), vreinterpretq_u8_f32(v)); }
  static V add(V a, V b) { return vaddq_f32(a, b); }
  static V sub(V a, V b) { return vsubq_f32(a, b); }
  static V mul(V a, V b) { return vmulq_f32(a, b); }
  static V div(V a, V b) { return vdivq_f32(a, b); }
  static V max(V a, V b) { return vmaxq_f32(a, b); }
  static V fmadd(V a, V b, V c) { return vfmaq_f32(c, a, b); }  // a * b + c

  static float hsum(V v) { return vaddvq_f32(v); }
  static float hmax(V v) { return vmaxvq_f32(v); }

  // W IEEE halves (unaligned) widened to F32.
  static V load_f16(const void* p) {
    return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(static_cast<const uint8_t*>(p))));
  }

  // W bfloat16 values (unaligned) widened to F32 by moving them to the upper half of each lane.
  static V load_bf16(const void* p) {
    const uint16x4_t h = vreinterpret_u16_u8(vld1_u8(static_cast<const uint8_t*>(p)));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
  }

  // Lanes (0,1), (2,3) exchanged: the partner of every rotary pair.
  static V swap_pairs(V v) { return vrev64q_f32(v); }

  // (-1, +1, -1, +1): the sign pattern of the rotary cross term.
  static V pair_signs() {
    static const float kSigns[4] = {-1.0f, 1.0f, -1.0f, 1.0f};
    return vld1q_f32(kSigns);
  }

  // exp(x) in F32, computed as in Avx2Ops::exp (range reduction by ln2, degree-7 Taylor
  // polynomial, exponent scaling); inputs are clamped to [-87.3, 88.7].
  static V exp(V x) {
    x = vminq_f32(vmaxq_f32(x, set1(-87.3f)), set1(88.7f));
    const V n = vrndnq_f32(vmulq_f32(x, set1(1.44269504089f)));
    V r = vfmsq_f32(x, n, set1(0.693145751953125f));  // x - n * (high part of ln2)
    r = vfmsq_f32(r, n, set1(1.4286068203e-06f));     // minus n * (the rest)
    V p = set1(1.0f / 5040.0f);
    p = fmadd(p, r, set1(1.0f / 720.0f));
    p = fmadd(p, r, set1(1.0f / 120.0f));
    p = fmadd(p, r, set1(1.0f / 24.0f));
    p = fmadd(p, r, set1(1.0f / 6.0f));
    p = fmadd(p, r, set1(0.5f));
    p = fmadd(p, r, set1(1.0f));
    p = fmadd(p, r, set1(1.0f));
    const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(bits));
  }

  // First n (< W) floats; the other lanes are zero.
  static V load_partial(const float* p, int n) {
    float tmp[W] = {};
    std::memcpy(tmp, p, static_cast<size_t>(n) * sizeof(float));
    return vld1q_f32(tmp);
  }

  static void store_partial(float* p, V v, int n) {
    float tmp[W];
    vst1q_f32(tmp, v);
    std::memcpy(p, tmp, static_cast<size_t>(n) * sizeof(float));
  }
};

}  // namespace
}  // namespace geb::kernels
