// AVX2 + FMA + F16C vector operations that the shared kernel bodies (*_body.h) are written
// against. Include only from *_avx2.cpp files, which are compiled with those flags. Everything
// lives in an anonymous namespace so no symbol built with AVX2 flags can leak to other files.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "numeric.h"

namespace geb::kernels {
namespace {

struct Avx2Ops {
  using V = __m256;
  static constexpr int W = 8;  // floats per vector
  static constexpr int kRegisters = 16;  // vector registers (ymm0-15), for sizing register tiles

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }  // a * b + c

  static float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  static float hmax(V v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // W IEEE halves (unaligned) widened to F32.
  static V load_f16(const void* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(static_cast<const __m128i*>(p)));
  }

  // W bfloat16 values (unaligned) widened to F32 by moving them to the upper half of each lane.
  static V load_bf16(const void* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }

  // Lanes (0,1), (2,3), ... exchanged: the partner of every rotary pair.
  static V swap_pairs(V v) { return _mm256_permute_ps(v, 0xB1); }

  // (-1, +1, -1, +1, ...): the sign pattern of the rotary cross term.
  static V pair_signs() { return _mm256_setr_ps(-1, 1, -1, 1, -1, 1, -1, 1); }

  // exp(x) in F32: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its degree-7 Taylor polynomial
  // (truncation error below 6e-9 relative), then scaled by 2^n through the exponent bits.
  // Inputs are clamped to [-87.3, 88.7], so very negative inputs return about 1e-38, not 0.
  static V exp(V x) {
    x = _mm256_min_ps(_mm256_max_ps(x, set1(-87.3f)), set1(88.7f));
    const V n = _mm256_round_ps(_mm256_mul_ps(x, set1(1.44269504089f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, set1(0.693145751953125f), x);  // ln2 split in a high part
    r = _mm256_fnmadd_ps(n, set1(1.4286068203e-06f), r);  // and the rest
    V p = set1(1.0f / 5040.0f);
    p = fmadd(p, r, set1(1.0f / 720.0f));
    p = fmadd(p, r, set1(1.0f / 120.0f));
    p = fmadd(p, r, set1(1.0f / 24.0f));
    p = fmadd(p, r, set1(1.0f / 6.0f));
    p = fmadd(p, r, set1(0.5f));
    p = fmadd(p, r, set1(1.0f));
    p = fmadd(p, r, set1(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  }

  // First n (< W) floats; the other lanes are zero.
  static V load_partial(const float* p, int n) {
    alignas(32) float tmp[W] = {};
    std::memcpy(tmp, p, static_cast<size_t>(n) * sizeof(float));
    return _mm256_load_ps(tmp);
  }

  static void store_partial(float* p, V v, int n) {
    alignas(32) float tmp[W];
    _mm256_store_ps(tmp, v);
    std::memcpy(p, tmp, static_cast<size_t>(n) * sizeof(float));
  }
};

}  // namespace
}  // namespace geb::kernels
