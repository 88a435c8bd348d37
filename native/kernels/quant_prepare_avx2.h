// AVX2 activation quantization for the Q8_0 and Q4_0 matmuls: the layout and rule of
// prepare_q8_activations (quant.h), vectorized. Include only from *_avx2.cpp files, which are
// compiled with AVX2, FMA and F16C.
//
// The output must equal the scalar reference bit for bit, because every tier quantizes
// activations identically (the NOTE in quant.h). Each step below therefore repeats one scalar
// step with an operation that rounds the same way:
//   amax     VMAXPS with the running maximum as second operand returns that operand when the input
//            is NaN, as std::max(amax, NaN) keeps amax. Max is exact, so the order does not matter.
//   d, 1/d   the same scalar float division.
//   round    VROUNDPS in the current rounding direction without exceptions is std::nearbyint.
//   clamp    VMAXPS(v, -127) then VMINPS(v, 127) map NaN to -127, as std::fmax then std::fmin do.
// The scalar loop calls fminf, fmaxf and nearbyintf out of line. In `perf record` of a 1-thread
// 128-token Q4_0 prefill of a GEB-1.3B-shaped model (Zen 3, model load included), the scalar
// preparation took 8.5% of the samples and this one takes 0.7%.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels.h"
#include "quant.h"

namespace geb::kernels {
namespace {

// Quantizes one token row of k activations (k a multiple of kQuantBlock) into `row`.
inline void prepare_q8_row_avx2(const float* x, int k, uint8_t* row) {
  const int nb = k / kQuantBlock;
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256 low = _mm256_set1_ps(-127.0f);
  const __m256 high = _mm256_set1_ps(127.0f);
  // VPACKSSDW and VPACKSSWB interleave the 128-bit halves, so the 32-bit groups of four bytes
  // come out in the order 0, 2, 4, 6, 1, 3, 5, 7 and this permutation puts them back.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  auto* qs = reinterpret_cast<int8_t*>(row);
  uint8_t* scales = row + k;
  uint8_t* sums = scales + static_cast<size_t>(nb) * sizeof(float);

  for (int b = 0; b < nb; ++b) {
    const float* xb = x + static_cast<size_t>(b) * kQuantBlock;
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(xb + 8 * i);
      amax = _mm256_max_ps(_mm256_andnot_ps(sign_bit, v[i]), amax);
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float d = _mm_cvtss_f32(m) / 127.0f;
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;

    const __m256 scale = _mm256_set1_ps(inverse);
    __m256i q[4];
    for (int i = 0; i < 4; ++i) {
      const __m256 r = _mm256_round_ps(_mm256_mul_ps(v[i], scale), _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
      q[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, low), high));
    }
    const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + static_cast<size_t>(b) * kQuantBlock),
                        _mm256_permutevar8x32_epi32(packed, order));

    // The quants are integers of at most 127 in magnitude, so the int32 sum is exact in any order.
    const __m256i total = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    const float scaled_sum = d * static_cast<float>(_mm_cvtsi128_si32(s));
    std::memcpy(scales + static_cast<size_t>(b) * sizeof(float), &d, sizeof d);
    std::memcpy(sums + static_cast<size_t>(b) * sizeof(float), &scaled_sum, sizeof scaled_sum);
  }
  const size_t used = static_cast<size_t>(k) + 2 * static_cast<size_t>(nb) * sizeof(float);
  std::memset(row + used, 0, q8_activation_row_bytes(k) - used);
}

}  // namespace
}  // namespace geb::kernels
