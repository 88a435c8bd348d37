// AVX2 integer operations for the quantized matmul body (matmul_quant_body.h). One 256-bit
// vector holds one 32-weight block; block dot products use VPMADDUBSW + VPMADDWD with the
// sign trick. Include only from *_avx2.cpp files, which are compiled with AVX2, FMA and F16C.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels.h"

namespace geb::kernels {
namespace {

struct QuantAvx2Ops {
  using Vi = __m256i;
  using Vf = __m256;
  static constexpr int kBlocks = 1;

  struct Weights {
    __m256i abs;   // |w| as unsigned bytes
    __m256i sign;  // w itself, whose sign is moved onto x
  };

  static Vf zero() { return _mm256_setzero_ps(); }
  static Vf to_float(Vi v) { return _mm256_cvtepi32_ps(v); }
  static Vf fmadd(Vf a, Vf b, Vf c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(Vf v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  template <int N>
  static Vi load_x(const int8_t* p) {
    static_assert(N == 1, "one block per AVX2 vector");
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }

  template <int N>
  static Vi load_q8_0(const uint8_t* row, int b) {
    static_assert(N == 1, "one block per AVX2 vector");
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + static_cast<size_t>(b) * sizeof(block_q8_0) + 2));
  }

  // One Q4_0 block as 32 unsigned nibbles q (0..15) in element order: low nibbles, then high.
  template <int N>
  static Vi load_q4_0_nibbles(const uint8_t* row, int b) {
    static_assert(N == 1, "one block per AVX2 vector");
    // The 16 bytes go to both halves in one load, then only the upper half shifts down by a
    // nibble: one load and two ALU operations, against two loads and three with an insert.
    const uint8_t* p = row + static_cast<size_t>(b) * sizeof(block_q4_0) + 2;
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i shifted = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0f));
  }

  static Weights prepare_weights(Vi w) { return {_mm256_abs_epi8(w), w}; }

  // Per int32 lane i: the sum of w[j] * x[j] over bytes j in [4i, 4i + 4). VPMADDUBSW needs an
  // unsigned operand, so it gets |w| and x takes w's sign; pairs stay within int16
  // (at most 2 * 128 * 127).
  static Vi dot(const Weights& w, Vi x) {
    const __m256i xs = _mm256_sign_epi8(x, w.sign);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w.abs, xs), _mm256_set1_epi16(1));
  }

  // Per int32 lane i: the sum of q[j] * x[j] over bytes j in [4i, 4i + 4) for unsigned q < 16;
  // pairs stay far inside int16 (at most 2 * 15 * 127).
  static Vi dot_unsigned(Vi q, Vi x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1));
  }

  // Q4_0 over four tokens in one vector (matmul_quant_body.h, packed path). Returns int32 lanes
  // [a, b, c, d | a, b, c, d]: tokens a..d's dots over the block's first 16 elements in the low
  // half, the last 16 in the high half. Nibble products pair to at most 2 * 15 * 127 = 3810 per
  // int16, so two rounds of pairwise int16 adds (at most 15240) cannot overflow, and the four
  // tokens share one VPMADDWD instead of one each.
  static constexpr bool kPackedQ4x4 = true;
  static Vi dot_unsigned_x4(Vi q, Vi xa, Vi xb, Vi xc, Vi xd) {
    const __m256i ab = _mm256_hadd_epi16(_mm256_maddubs_epi16(q, xa), _mm256_maddubs_epi16(q, xb));
    const __m256i cd = _mm256_hadd_epi16(_mm256_maddubs_epi16(q, xc), _mm256_maddubs_epi16(q, xd));
    return _mm256_madd_epi16(_mm256_hadd_epi16(ab, cd), _mm256_set1_epi16(1));
  }
  static Vf load_f(const float* p) { return _mm256_loadu_ps(p); }
  static Vf broadcast_f(float v) { return _mm256_set1_ps(v); }
  static Vf fmsub(Vf a, Vf b, Vf c) { return _mm256_fmsub_ps(a, b, c); }
  static void store_f(float* p, Vf v) { _mm256_storeu_ps(p, v); }

  // Running sum of d_w * s_x (Q4_0's offset term), one float per token.
  using Offset = float;
  static Offset offset_zero() { return 0.0f; }
  template <int N>
  static Offset offset_fmadd(float dw, const float* s, Offset sum) { return sum + dw * *s; }
  static float offset_sum(Offset sum) { return sum; }

  template <int N>
  static float load_scales(const uint8_t* block, size_t /*block_bytes*/) {
    // A 32-bit load straight into a vector register: the two bytes after the half scale belong
    // to the same block and land in a lane that is converted but not used.
    int32_t word;
    std::memcpy(&word, block, 4);
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(word)));
  }

  template <int N>
  static Vf scale(float dw, const float* dx) { return _mm256_set1_ps(dw * *dx); }
};

}  // namespace
}  // namespace geb::kernels
