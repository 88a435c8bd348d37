// AVX2 matmuls over Q4_0 and Q8_0 weights repacked in groups of 8 rows (Q4_0x8, Q8_0x8; layouts
// in quant.h). Include only from *_avx2.cpp files, which are compiled with AVX2, FMA and F16C.
//
// Per 32-element block, each 32-byte chunk of a group-block holds 4 elements of each of the 8
// rows, one row per 32-bit lane. VPMADDUBSW multiplies a chunk with the 4 matching activations
// broadcast to every lane, so the 8 rows' integer dots end in one vector without horizontal adds,
// and one conversion and two FMAs scale all 8 rows. Q4_0 chunks split by a mask and a shift into
// two vectors of unsigned nibbles. Q8_0 chunks are signed, so they take the sign trick of
// quant_ops_avx2.h. With several tokens (prefill), each chunk is unpacked once and multiplied
// with all 4 tokens of the tile (the `tile` members below).
//
// Prefill speed on one Zen 3 core (3.2 GHz), one tile of 7 groups, 4 tokens and k = 2048 from
// L1/L2, in cycles per group-block and 4 tokens (best of 5 runs of a standalone loop): Q4_0 48.5
// before the tiles went chunk by chunk without spills, 36 to 39 after (27 to 28.5 int8 MACs per
// cycle). Q8_0 took 70 before and 55 after. Without the per-block float work (VPMADDWD,
// conversion, FMSUB and FMA per token) Q4_0's integer part alone takes 25 cycles. Tiles of 1, 2
// and 3 tokens run at 19, 24 and 27 MACs per cycle, so 4 tokens stay the widest tile that fits
// the 16 ymm registers.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels.h"
#include "quant.h"

namespace geb::kernels {
namespace {

// Pointers into one prepared token row (quant.h): quants, block scales d, block sums s.
struct TokenRow {
  const int8_t* q;
  const float* d;
  const float* s;
};

// The 4 activations at xb + offset in every 32-bit lane.
inline __m256i broadcast_activations(const int8_t* xb, int offset) {
  int32_t word;
  std::memcpy(&word, xb + offset, 4);
  return _mm256_set1_epi32(word);
}

// Makes the compiler treat v as computed here. GCC 12 otherwise reassociates the integer adds
// of a tile's block sums into one tree over all 32 products of the block, which keeps about 30
// vectors live and spills half of them to the stack every block. The empty asm names v as an
// in/out register operand, so each chunk's products are added before the next chunk starts.
inline __m256i pin_register(__m256i v) {
#if defined(__GNUC__)
  asm("" : "+x"(v));
#endif
  return v;
}

// Blocks per span of a prefill tile. The Q4_0 offsets 8 s_x of up to 4 tokens over one span sit
// in a stack array of 8 KiB. Rows longer than 512 blocks (16384 weights) are summed span by span
// into y.
constexpr int kSpanBlocks = 512;

struct Q4_0x8Avx2 {
  static constexpr size_t kBlockBytes = kQ4_0x8BlockBytes;
  // The dot counts the nibbles unsigned (0..15): 8 s_x per block takes the offset of 8 off.
  static constexpr bool kNibbleOffset = true;

  // q[c] contains elements 4c .. 4c + 3 of every row (c < 4) or elements 16 + 4(c - 4) .. of every
  // row (c >= 4) as unsigned bytes.
  struct Unpacked {
    __m256i q[8];
  };

  // Returns the 8 rows' scales and unpacks the quants of a group-block.
  static __m256 load(const uint8_t* block, Unpacked& u) {
    const __m256i mask = _mm256_set1_epi8(0x0f);
    for (int c = 0; c < 4; ++c) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16 + 32 * c));
      u.q[c] = _mm256_and_si256(v, mask);
      u.q[4 + c] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
    }
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
  }

  // Integer dots of the 8 rows with one token's block xb, one row per int32 lane.
  static __m256i dots(const Unpacked& u, const int8_t* xb) {
    // Each int16 lane sums 2 products of a nibble (at most 15) and an int8 (at most 127 in
    // magnitude), at most 3810, and the eight vectors add to at most 16 products per lane:
    // 30480 < 32767, so the int16 sums cannot overflow before VPMADDWD widens them. The adds
    // form a tree, so the products of a block do not wait on each other.
    __m256i p[8];
    for (int c = 0; c < 4; ++c) {
      p[c] = _mm256_maddubs_epi16(u.q[c], broadcast_activations(xb, 4 * c));
      p[4 + c] = _mm256_maddubs_epi16(u.q[4 + c], broadcast_activations(xb, 16 + 4 * c));
    }
    const __m256i low = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
    const __m256i high = _mm256_add_epi16(_mm256_add_epi16(p[4], p[5]), _mm256_add_epi16(p[6], p[7]));
    return _mm256_madd_epi16(_mm256_add_epi16(low, high), _mm256_set1_epi16(1));
  }

  // Adds blocks [b0, b1) of one group times T tokens to acc (prefill tile), one vector per
  // token and one row per lane. offsets[t][b - b0] is 8 s_x of token t's block b. The loop goes
  // chunk by chunk: a chunk's two nibble vectors are unpacked once and multiplied with the
  // broadcast activations of every token, so at T = 4 the live set is 4 int16 block sums, 4
  // float sums, the two nibble vectors, broadcasts and two constants, which fits in the 16 ymm
  // registers (objdump: no stack access in the loop with GCC 12). Each int16 lane of a block sum
  // collects 8 VPMADDUBSW pairs of at most 2 * 15 * 127 = 3810, at most 30480 < 32767, and one
  // VPMADDWD per token and block widens it.
  template <int T>
  static void tile(const uint8_t* group, int b0, int b1, const TokenRow* x, const float (*offsets)[kSpanBlocks],
                   __m256 (&acc)[T]) {
    const __m256i mask = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 sums[T];
    for (int t = 0; t < T; ++t) sums[t] = acc[t];
    for (int b = b0; b < b1; ++b) {
      const uint8_t* block = group + static_cast<size_t>(b) * kBlockBytes;
      __m256i dot[T];
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16 + 32 * c));
        const __m256i low = _mm256_and_si256(v, mask);
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
        for (int t = 0; t < T; ++t) {
          const int8_t* xb = x[t].q + b * kQuantBlock;
          const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(low, broadcast_activations(xb, 4 * c)),
                                             _mm256_maddubs_epi16(high, broadcast_activations(xb, 16 + 4 * c)));
          dot[t] = pin_register(c == 0 ? p : _mm256_add_epi16(dot[t], p));
          if (c == 3) {
            // sums += d_w * (dot * d_x - 8 s_x), finished token by token to keep few vectors live
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
            const __m256 d = _mm256_cvtepi32_ps(_mm256_madd_epi16(dot[t], ones));
            const __m256 scaled = _mm256_fmsub_ps(d, _mm256_set1_ps(x[t].d[b]), _mm256_set1_ps(offsets[t][b - b0]));
            sums[t] = _mm256_fmadd_ps(scaled, dw, sums[t]);
          }
        }
      }
    }
    for (int t = 0; t < T; ++t) acc[t] = sums[t];
  }
};

struct Q8_0x8Avx2 {
  static constexpr size_t kBlockBytes = kQ8_0x8BlockBytes;
  static constexpr bool kNibbleOffset = false;

  // |w| of the 8 chunks, and the chunks themselves, whose signs move onto the activations.
  struct Unpacked {
    __m256i abs[8];
    const uint8_t* chunks;
  };

  static __m256 load(const uint8_t* block, Unpacked& u) {
    u.chunks = block + 16;
    for (int c = 0; c < 8; ++c) {
      u.abs[c] = _mm256_abs_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u.chunks + 32 * c)));
    }
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
  }

  static __m256i dots(const Unpacked& u, const int8_t* xb) {
    // A VPMADDUBSW pair reaches 2 * 128 * 127 = 32512, so each chunk widens to int32 at once.
    __m256i p[8];
    for (int c = 0; c < 8; ++c) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u.chunks + 32 * c));
      const __m256i x = _mm256_sign_epi8(broadcast_activations(xb, 4 * c), w);
      p[c] = _mm256_madd_epi16(_mm256_maddubs_epi16(u.abs[c], x), _mm256_set1_epi16(1));
    }
    const __m256i low = _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3]));
    const __m256i high = _mm256_add_epi32(_mm256_add_epi32(p[4], p[5]), _mm256_add_epi32(p[6], p[7]));
    return _mm256_add_epi32(low, high);
  }

  // Adds blocks [b0, b1) of one group times T tokens to acc, chunk by chunk as in
  // Q4_0x8Avx2::tile (Q8_0 has no offsets). A VPMADDUBSW pair can reach 2 * 128 * 127 = 32512,
  // so every chunk widens to int32 at once. VPMADDWD shares the two multiply pipes with
  // VPMADDUBSW on Zen 3, so this costs 16 multiplies per token and block against Q4_0's 9.
  // Splitting w + 128 into two nibbles would drop VPSIGNB and keep int16 sums, but it takes 16
  // VPMADDUBSW and more operations in all (counted: about 38 against 34 per token and block),
  // so the sign trick stays.
  template <int T>
  static void tile(const uint8_t* group, int b0, int b1, const TokenRow* x, const float (*/*offsets*/)[kSpanBlocks],
                   __m256 (&acc)[T]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 sums[T];
    for (int t = 0; t < T; ++t) sums[t] = acc[t];
    for (int b = b0; b < b1; ++b) {
      const uint8_t* block = group + static_cast<size_t>(b) * kBlockBytes;
      __m256i dot[T];
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16 + 32 * c));
        const __m256i magnitude = _mm256_abs_epi8(w);
        for (int t = 0; t < T; ++t) {
          const __m256i xs = _mm256_sign_epi8(broadcast_activations(x[t].q + b * kQuantBlock, 4 * c), w);
          const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, xs), ones);
          dot[t] = pin_register(c == 0 ? p : _mm256_add_epi32(dot[t], p));
          if (c == 7) {
            // sums += d_w * dot * d_x, finished token by token to keep few vectors live
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
            const __m256 scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(dot[t]), _mm256_set1_ps(x[t].d[b]));
            sums[t] = _mm256_fmadd_ps(scaled, dw, sums[t]);
          }
        }
      }
    }
    for (int t = 0; t < T; ++t) acc[t] = sums[t];
  }
};

// acc += d_w * (dot * d_x - 8 s_x) for Q4_0, d_w * dot * d_x for Q8_0: one block of one token
// for 8 rows.
template <typename Fmt>
inline __m256 scale_block(__m256i dot, __m256 dw, const TokenRow& x, int b, __m256 acc) {
  __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(x.d[b]));
  if constexpr (Fmt::kNibbleOffset) v = _mm256_fnmadd_ps(_mm256_set1_ps(x.s[b]), _mm256_set1_ps(8.0f), v);
  return _mm256_fmadd_ps(v, dw, acc);
}

// Groups that one decode thread reads at once, each from its own part of the thread's range. A
// group is one contiguous stream of nb group-blocks, and one stream per core keeps too few cache
// lines in flight. In a plain read test on one Zen 3 core, four streams read 30-45% faster than
// one (bench/bandwidth.mjs reads the same way). The four accumulators are also independent FMA chains.
constexpr int kDecodeStreams = 4;
static_assert(kDecodeStreams >= 1 && kDecodeStreams <= 4, "groups_times_one_token instantiates up to 4 streams");

// Bytes ahead of the current group-block that each decode stream prefetches. With four streams,
// 1 KiB raised one thread's decode by about 5-10%, and 4 KiB did no better. Two threads showed no
// clear change. (Q4_0 and Q8_0, medians of 3 alternating runs on a loaded 2-core Zen 3 VM.)
constexpr size_t kDecodePrefetchBytes = 1024;

// Computes the sums of S groups with one token, one vector per group and one row per lane. Each
// step takes block b of every group, so the S streams advance together.
template <typename Fmt, int S>
void groups_times_token(const uint8_t* const (&group)[S], int nb, const TokenRow& x, __m256 (&acc)[S]) {
  for (int s = 0; s < S; ++s) acc[s] = _mm256_setzero_ps();
  typename Fmt::Unpacked u;
  for (int b = 0; b < nb; ++b) {
    const size_t offset = static_cast<size_t>(b) * Fmt::kBlockBytes;
    for (int s = 0; s < S; ++s) {
      for (size_t line = 0; line < Fmt::kBlockBytes; line += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(group[s] + offset + kDecodePrefetchBytes + line), _MM_HINT_T0);
      }
      const __m256 dw = Fmt::load(group[s] + offset, u);
      acc[s] = scale_block<Fmt>(Fmt::dots(u, x.q + b * kQuantBlock), dw, x, b, acc[s]);
    }
  }
}

// Writes the lanes of group g's sums that fall in rows [r0, r1) to y (one token's output row),
// or adds them to y when `add` is set.
inline void store_group(__m256 sums, int g, int r0, int r1, float* y, bool add = false) {
  float lanes[kRepackRows];
  _mm256_storeu_ps(lanes, sums);
  for (int i = 0; i < kRepackRows; ++i) {
    const int r = g * kRepackRows + i;
    if (r >= r0 && r < r1) y[r] = add ? y[r] + lanes[i] : lanes[i];
  }
}

// Computes groups [g0, g1) times tokens [t0, t0 + T) with Fmt::tile, span by span of blocks.
// The Q4_0 offsets are multiplied by 8 here once per span, so the tile's float work per token
// and block is one FMSUB and one FMA.
template <typename Fmt, int T>
void groups_times_tokens(const uint8_t* base, size_t group_bytes, const TokenRow* x, int nb, int t0, int g0, int g1,
                         int r0, int r1, float* y, int ldy) {
  alignas(32) float offsets[T][kSpanBlocks];
  for (int b0 = 0; b0 < nb; b0 += kSpanBlocks) {
    const int b1 = std::min(nb, b0 + kSpanBlocks);
    if constexpr (Fmt::kNibbleOffset) {
      for (int t = 0; t < T; ++t) {
        for (int b = b0; b < b1; ++b) offsets[t][b - b0] = 8.0f * x[t].s[b];
      }
    }
    for (int g = g0; g < g1; ++g) {
      __m256 acc[T];
      for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
      Fmt::template tile<T>(base + static_cast<size_t>(g) * group_bytes, b0, b1, x, offsets, acc);
      for (int t = 0; t < T; ++t) store_group(acc[t], g, r0, r1, y + static_cast<size_t>(t0 + t) * ldy, b0 > 0);
    }
  }
}

// Computes groups g, g + span, g + 2 span, ... (S of them) times one token.
template <typename Fmt, int S>
void spaced_groups_times_token(const uint8_t* base, size_t group_bytes, const TokenRow& x, int nb, int g, int span,
                               int r0, int r1, float* y) {
  const uint8_t* group[S];
  for (int s = 0; s < S; ++s) group[s] = base + static_cast<size_t>(g + s * span) * group_bytes;
  __m256 acc[S];
  groups_times_token<Fmt, S>(group, nb, x, acc);
  for (int s = 0; s < S; ++s) store_group(acc[s], g + s * span, r0, r1, y);
}

// Computes groups [g0, g1) times one token (decode). The range is cut into kDecodeStreams spans of
// equal length, except a shorter last one, and the spans are read side by side.
template <typename Fmt>
void groups_times_one_token(const uint8_t* base, size_t group_bytes, const TokenRow& x, int nb, int g0, int g1, int r0,
                            int r1, float* y) {
  const int n = g1 - g0;
  const int span = (n + kDecodeStreams - 1) / kDecodeStreams;
  for (int i = 0; i < span; ++i) {
    // The spans that still contain group i: all of them, except past the end of a short last span.
    const int streams = std::min(kDecodeStreams, (n - i + span - 1) / span);
    const int g = g0 + i;
    switch (streams) {
      case 4: spaced_groups_times_token<Fmt, 4>(base, group_bytes, x, nb, g, span, r0, r1, y); break;
      case 3: spaced_groups_times_token<Fmt, 3>(base, group_bytes, x, nb, g, span, r0, r1, y); break;
      case 2: spaced_groups_times_token<Fmt, 2>(base, group_bytes, x, nb, g, span, r0, r1, y); break;
      default: spaced_groups_times_token<Fmt, 1>(base, group_bytes, x, nb, g, span, r0, r1, y); break;
    }
  }
}

// MatmulFn over a repacked matrix. Rows [r0, r1) are computed by whole groups, and only the rows
// inside the range are written; ranges aligned to 8 rows waste nothing. The loop order follows
// matmul_quant (matmul_quant_body.h): token chunks whose prepared rows fit in about 256 KiB, and
// tiles of groups of about 64 KiB of weights, so every group of four tokens of a chunk reads the
// tile from L2. Up to four tokens stream the weights once, one token (decode) in several streams.
template <typename Fmt>
void matmul_x8(const void* w, size_t row_stride, const PreparedX& x, int k, int n_tokens, int r0, int r1, float* y,
               int ldy) {
  const int nb = k / kQuantBlock;
  const auto* base = static_cast<const uint8_t*>(w);
  const size_t group_bytes = kRepackRows * row_stride;
  const int g_begin = r0 / kRepackRows;
  const int g_end = (r1 + kRepackRows - 1) / kRepackRows;
  const int chunk = std::max(4, static_cast<int>((256 * 1024) / x.row_bytes) / 4 * 4);
  const int tile = n_tokens <= 4 ? g_end - g_begin : std::max(1, static_cast<int>((64 * 1024) / group_bytes));

  auto token_row = [&](int t) {
    const auto* row = static_cast<const uint8_t*>(x.data) + static_cast<size_t>(t) * x.row_bytes;
    const auto* d = reinterpret_cast<const float*>(row + k);
    return TokenRow{reinterpret_cast<const int8_t*>(row), d, d + nb};
  };

  if (n_tokens == 1) {
    groups_times_one_token<Fmt>(base, group_bytes, token_row(0), nb, g_begin, g_end, r0, r1, y);
    return;
  }
  for (int c0 = 0; c0 < n_tokens; c0 += chunk) {
    const int c1 = std::min(n_tokens, c0 + chunk);
    for (int ga = g_begin; ga < g_end; ga += tile) {
      const int gb = std::min(g_end, ga + tile);
      int t = c0;
      for (; t + 4 <= c1; t += 4) {
        const TokenRow rows[4] = {token_row(t), token_row(t + 1), token_row(t + 2), token_row(t + 3)};
        groups_times_tokens<Fmt, 4>(base, group_bytes, rows, nb, t, ga, gb, r0, r1, y, ldy);
      }
      if (t == c1) continue;
      const TokenRow rows[3] = {token_row(t), token_row(std::min(t + 1, c1 - 1)), token_row(std::min(t + 2, c1 - 1))};
      switch (c1 - t) {
        case 3: groups_times_tokens<Fmt, 3>(base, group_bytes, rows, nb, t, ga, gb, r0, r1, y, ldy); break;
        case 2: groups_times_tokens<Fmt, 2>(base, group_bytes, rows, nb, t, ga, gb, r0, r1, y, ldy); break;
        default: groups_times_tokens<Fmt, 1>(base, group_bytes, rows, nb, t, ga, gb, r0, r1, y, ldy); break;
      }
    }
  }
}

}  // namespace
}  // namespace geb::kernels
