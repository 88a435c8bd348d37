// AVX-512 integer operations for the quantized matmul body (matmul_quant_body.h). One 512-bit
// vector holds two 32-weight blocks. With kVnni the block dot products use VPDPBUSD (AVX-512
// VNNI); without it they use VPMADDUBSW + VPMADDWD (AVX-512 BW). Include only from
// *_avx512.cpp and *_avx512vnni.cpp files, which are compiled with the matching flags.
//
// NOTE: these kernels compile but have never run. The development machine (AMD EPYC, AVX2 only)
// and qemu-user 7.2 lack AVX-512, so the tier comparison in native/tests/test_quant.cpp has not
// executed them yet. Run it on an AVX-512 (VNNI) CPU before trusting these tiers.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels.h"

namespace geb::kernels {
namespace {

template <bool kVnni>
struct QuantAvx512Ops {
  using Vi = __m512i;
  using Vf = __m512;
  static constexpr int kBlocks = 2;  // 32-weight blocks per vector

  // Weights unpacked to signed int8 plus what `dot` needs about them, computed once per load
  // and shared by every token of the tile.
  struct Weights {
    __m512i a;     // VNNI: the weights; BW: their absolute values (as unsigned bytes)
    __m512i b;     // VNNI: 128 * (sum of each 4-weight group); BW: unused
    __mmask64 neg; // BW: lanes whose weight is negative
  };

  static Vf zero() { return _mm512_setzero_ps(); }
  static Vf to_float(Vi v) { return _mm512_cvtepi32_ps(v); }
  static Vf fmadd(Vf a, Vf b, Vf c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(Vf v) { return _mm512_reduce_add_ps(v); }

  // N (1 or 2) blocks of 32 int8; a missing second block reads as zeros.
  template <int N>
  static Vi join(__m256i first, __m256i second) {
    if constexpr (N == 2) return _mm512_inserti64x4(_mm512_castsi256_si512(first), second, 1);
    return _mm512_zextsi256_si512(first);
  }

  template <int N>
  static Vi load_x(const int8_t* p) {
    if constexpr (N == 2) return _mm512_loadu_si512(p);
    return _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }

  template <int N>
  static Vi load_q8_0(const uint8_t* row, int b) {
    const uint8_t* p = row + static_cast<size_t>(b) * sizeof(block_q8_0) + 2;
    const __m256i first = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (N == 2) {
      return join<2>(first, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + sizeof(block_q8_0))));
    }
    return join<1>(first, first);
  }

  // One Q4_0 block as 32 unsigned nibbles q (0..15) in element order: low nibbles, then high.
  static __m256i unpack_q4_0(const uint8_t* block) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
  }

  template <int N>
  static Vi load_q4_0_nibbles(const uint8_t* row, int b) {
    const uint8_t* p = row + static_cast<size_t>(b) * sizeof(block_q4_0);
    const __m256i first = unpack_q4_0(p);
    if constexpr (N == 2) return join<2>(first, unpack_q4_0(p + sizeof(block_q4_0)));
    return join<1>(first, first);
  }

  static Weights prepare_weights(Vi w) {
    Weights out;
    if constexpr (kVnni) {
      out.a = w;
      // (x + 128) * w summed = x * w summed + 128 * (w summed): the second term, per lane
      out.b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(static_cast<char>(0x80)), w);
      out.neg = 0;
    } else {
      out.a = _mm512_abs_epi8(w);
      out.b = _mm512_setzero_si512();
      out.neg = _mm512_movepi8_mask(w);
    }
    return out;
  }

  // Per int32 lane i: the sum of w[j] * x[j] over bytes j in [4i, 4i + 4).
  static Vi dot(const Weights& w, Vi x) {
    if constexpr (kVnni) {
      // VPDPBUSD multiplies unsigned by signed bytes, so x moves to [1, 255] by flipping its
      // sign bit (x + 128) and the 128 * sum(w) excess is taken off again.
      const __m512i xu = _mm512_xor_si512(x, _mm512_set1_epi8(static_cast<char>(0x80)));
      return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), xu, w.a), w.b);
    } else {
      // |w| * (x with the sign of w): pairs stay within int16 (at most 2 * 128 * 127).
      const __m512i xs = _mm512_mask_sub_epi8(x, w.neg, _mm512_setzero_si512(), x);
      return _mm512_madd_epi16(_mm512_maddubs_epi16(w.a, xs), _mm512_set1_epi16(1));
    }
  }

  // Per int32 lane i: the sum of q[j] * x[j] over bytes j in [4i, 4i + 4) for unsigned q < 16.
  static Vi dot_unsigned(Vi q, Vi x) {
    if constexpr (kVnni) {
      return _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, x);
    } else {
      return _mm512_madd_epi16(_mm512_maddubs_epi16(q, x), _mm512_set1_epi16(1));
    }
  }

  // Running sums of d_w * s_x (Q4_0's offset term) per block slot, in lanes 0 and 1.
  using Offset = __m128;
  static Offset offset_zero() { return _mm_setzero_ps(); }
  template <int N>
  static Offset offset_fmadd(__m128 dw, const float* s, Offset sum) {
    const __m128 s2 = N == 2 ? _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(s))) : _mm_load_ss(s);
    return _mm_fmadd_ps(dw, s2, sum);
  }
  static float offset_sum(Offset sum) { return _mm_cvtss_f32(_mm_add_ss(sum, _mm_movehdup_ps(sum))); }

  // The weight scales of N blocks of `block_bytes` bytes each (the half `d` opens every block),
  // as F32 in lanes 0..N-1 and zero above.
  template <int N>
  static __m128 load_scales(const uint8_t* first_block, size_t block_bytes) {
    uint16_t d0, d1 = 0;
    std::memcpy(&d0, first_block, 2);
    if constexpr (N == 2) std::memcpy(&d1, first_block + block_bytes, 2);
    return _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(d0 | (static_cast<uint32_t>(d1) << 16))));
  }

  // d_w * d_x per block, spread over the 8 int32 lanes each block's dot occupies.
  template <int N>
  static Vf scale(__m128 dw, const float* dx) {
    __m128 x2;
    if constexpr (N == 2) {
      x2 = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(dx)));
    } else {
      x2 = _mm_load_ss(dx);
    }
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_mul_ps(dw, x2)));
  }
};

}  // namespace
}  // namespace geb::kernels
