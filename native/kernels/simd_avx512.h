// AVX-512 (F, BW, VL, DQ) vector operations that the shared kernel bodies (*_body.h) are written
// against. Include only from *_avx512.cpp files, which are compiled with those flags. Everything
// lives in an anonymous namespace so no symbol built with AVX-512 flags can leak to other files.
#pragma once

// NOTE: these kernels compile, but they have not yet been run against the scalar reference on a
// CPU with AVX-512; geb_kernel_tests on such a CPU does that.

// GCC 12's AVX-512 intrinsic headers initialize placeholder registers from themselves
// (`__m512 __Y = __Y;`), which -Wall reports as uninitialized at every inlined call (GCC bug
// 105593). Only the AVX-512 translation units include this header, so the switch stays there.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "numeric.h"

namespace geb::kernels {
namespace {

struct Avx512Ops {
  using V = __m512;
  static constexpr int W = 16;  // floats per vector
  static constexpr int kRegisters = 32;  // vector registers (zmm0-31), for sizing register tiles

  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }  // a * b + c

  static float hsum(V v) {
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  static float hmax(V v) { return _mm512_reduce_max_ps(v); }

  // W IEEE halves (unaligned) widened to F32.
  static V load_f16(const void* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
  }

  // W bfloat16 values (unaligned) widened to F32 by moving them to the upper half of each lane.
  static V load_bf16(const void* p) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }

  // Lanes (0,1), (2,3), ... exchanged: the partner of every rotary pair.
  static V swap_pairs(V v) { return _mm512_permute_ps(v, 0xB1); }

  // (-1, +1, -1, +1, ...): the sign pattern of the rotary cross term.
  static V pair_signs() {
    return _mm512_setr_ps(-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1);
  }

  // exp(x) in F32, computed exactly as in Avx2Ops::exp (range reduction by ln2, degree-7
  // Taylor polynomial, exponent scaling); inputs are clamped to [-87.3, 88.7].
  static V exp(V x) {
    x = _mm512_min_ps(_mm512_max_ps(x, set1(-87.3f)), set1(88.7f));
    const V n = _mm512_roundscale_ps(_mm512_mul_ps(x, set1(1.44269504089f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, set1(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, set1(1.4286068203e-06f), r);
    V p = set1(1.0f / 5040.0f);
    p = fmadd(p, r, set1(1.0f / 720.0f));
    p = fmadd(p, r, set1(1.0f / 120.0f));
    p = fmadd(p, r, set1(1.0f / 24.0f));
    p = fmadd(p, r, set1(1.0f / 6.0f));
    p = fmadd(p, r, set1(0.5f));
    p = fmadd(p, r, set1(1.0f));
    p = fmadd(p, r, set1(1.0f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
  }

  // First n (< W) floats; the other lanes are zero.
  static V load_partial(const float* p, int n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
  }

  static void store_partial(float* p, V v, int n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
  }
};

}  // namespace
}  // namespace geb::kernels
