// SPDX-License-Identifier: MIT
// Tests of the quantized matmuls (Q8_0, Q4_0) and the activation preparation they share: every
// tier against the scalar reference on odd shapes (block counts that leave an AVX-512 tail,
// token counts that leave a register-blocking tail, partial row ranges), and the scalar
// reference against a double-precision sum over the dequantized weights.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/kernel_table.h"
#include "harness.h"
#include "kernels/kernels.h"
#include "kernels/numeric.h"
#include "kernels/quant.h"

namespace {

using geb::kernels::block_q4_0;
using geb::kernels::block_q8_0;
using geb::kernels::KernelTable;
using geb::kernels::PreparedX;
using geb::kernels::WeightType;
constexpr int kBlock = geb::kernels::kQuantBlock;

// Random weight rows of `type` (rows, k), with scales spread over two decades and every
// quantized value reachable, including -128 for Q8_0.
std::vector<uint8_t> random_weights(WeightType type, int rows, int k, std::mt19937& rng) {
  const size_t row_bytes = geb::kernels::row_bytes(type, k);
  std::vector<uint8_t> out(row_bytes * rows);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  std::uniform_int_distribution<int> byte(0, 255);
  const size_t block_bytes = type == WeightType::Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
  for (size_t b = 0; b < out.size() / block_bytes; ++b) {
    uint8_t* block = out.data() + b * block_bytes;
    const uint16_t d = geb::kernels::float_to_half(scale(rng) * (byte(rng) < 128 ? 1.0f : -1.0f));
    std::memcpy(block, &d, 2);
    for (size_t i = 2; i < block_bytes; ++i) block[i] = static_cast<uint8_t>(byte(rng));
  }
  return out;
}

std::vector<float> random_activations(int n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  // one all-zero block exercises the d = 0 path
  if (n >= 2 * kBlock) std::fill(x.begin() + kBlock, x.begin() + 2 * kBlock, 0.0f);
  return x;
}

struct Prepared {
  std::vector<uint8_t> bytes;
  PreparedX view;
};

Prepared prepare(const std::vector<float>& x, int k, int n_tokens) {
  Prepared p;
  const size_t row_bytes = geb::kernels::q8_activation_row_bytes(k);
  p.bytes.assign(row_bytes * n_tokens, 0xAB);
  geb::kernels::prepare_q8_activations(x.data(), k, n_tokens, p.bytes.data());
  p.view = PreparedX{p.bytes.data(), row_bytes};
  return p;
}

GEB_TEST(quant_prepare_activations_round_trip) {
  std::mt19937 rng(7);
  for (int k : {32, 96, 352}) {
    GEB_CONTEXT("k=" << k);
    const int n_tokens = 3;
    const std::vector<float> x = random_activations(k * n_tokens, rng);
    const Prepared p = prepare(x, k, n_tokens);
    CHECK_EQ(geb::kernels::q8_activation_row_bytes(k) % 64, size_t{0});
    CHECK_EQ(geb::kernels::prepared_row_bytes(WeightType::Q4_0, k), geb::kernels::q8_activation_row_bytes(k));
    CHECK_EQ(geb::kernels::prepared_row_bytes(WeightType::F16, k), static_cast<size_t>(k) * 4);
    for (int t = 0; t < n_tokens; ++t) {
      const uint8_t* row = p.bytes.data() + t * p.view.row_bytes;
      for (int b = 0; b < k / kBlock; ++b) {
        float d;
        std::memcpy(&d, row + k + b * 4, 4);
        float amax = 0.0f;
        for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(x[t * k + b * kBlock + i]));
        CHECK_NEAR(d, amax / 127.0f, 0.0);
        int max_q = 0;
        for (int i = 0; i < kBlock; ++i) {
          const int q = static_cast<int8_t>(row[b * kBlock + i]);
          max_q = std::max(max_q, std::abs(q));
          CHECK_NEAR(d * q, x[t * k + b * kBlock + i], d * 0.5f + 1e-7f);
        }
        // the largest magnitude maps to +-127 unless the block is all zeros
        CHECK_EQ(max_q, amax > 0.0f ? 127 : 0);
        int sum = 0;
        for (int i = 0; i < kBlock; ++i) sum += static_cast<int8_t>(row[b * kBlock + i]);
        float s;
        std::memcpy(&s, row + k + (k / kBlock + b) * 4, 4);
        CHECK_EQ(s, d * static_cast<float>(sum));
      }
      for (size_t i = k + 8 * (k / kBlock); i < p.view.row_bytes; ++i) CHECK_EQ(row[i], 0);
    }
  }
}

// Activation rows that stress the rounding and clamping of the preparation, one case per
// 32-element block. The cases are random normal values, exact ties at k + 1/2 steps (blocks whose
// step d is 1 or 1/8 exactly), zeros of both signs, huge and subnormal magnitudes, infinities
// and NaN.
std::vector<float> hard_activations(int n_blocks, std::mt19937& rng) {
  std::vector<float> x(static_cast<size_t>(n_blocks) * kBlock);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> step(-127, 126);
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int b = 0; b < n_blocks; ++b) {
    float* xb = x.data() + static_cast<size_t>(b) * kBlock;
    for (int i = 0; i < kBlock; ++i) xb[i] = normal(rng);
    switch (b % 9) {
      case 1:  // amax 127 gives d = 1: every value is a tie between two integers
        for (int i = 0; i < kBlock; ++i) xb[i] = static_cast<float>(step(rng)) + 0.5f;
        xb[0] = 127.0f;
        break;
      case 2:  // amax 127/8 gives d = 1/8, with ties at (k + 1/2) / 8
        for (int i = 0; i < kBlock; ++i) xb[i] = (static_cast<float>(step(rng)) + 0.5f) * 0.125f;
        xb[3] = -127.0f * 0.125f;
        break;
      case 3:
        for (int i = 0; i < kBlock; ++i) xb[i] = i % 2 == 0 ? 0.0f : -0.0f;
        break;
      case 4:
        xb[5] = std::numeric_limits<float>::max();
        xb[6] = -3e38f;
        xb[7] = 1e30f;
        break;
      case 5:  // subnormal amax: 1/d overflows to infinity
        for (int i = 0; i < kBlock; ++i) xb[i] = static_cast<float>(i - 16) * 1e-44f;
        break;
      case 6:
        xb[2] = std::numeric_limits<float>::min();
        for (int i = 8; i < kBlock; ++i) xb[i] = normal(rng) * 1e-39f;
        break;
      case 7:
        xb[4] = inf;
        xb[9] = -inf;
        break;
      case 8:
        xb[1] = nan;
        xb[30] = -nan;
        break;
      default:
        break;
    }
  }
  return x;
}

// Every tier's preparation writes the bytes of the scalar reference (quant.h): the same int8
// values, scales, sums and padding, whatever the input.
GEB_TEST(quant_prepare_identical_on_every_tier) {
  std::mt19937 rng(23);
  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& table = geb::kernel_table(tier);
    for (WeightType type : {WeightType::Q8_0, WeightType::Q4_0}) {
      const auto prepare_fn = table.prepare[static_cast<int>(type)];
      REQUIRE(prepare_fn != nullptr);
      for (int k : {32, 96, 288, 2048}) {
        for (int n_tokens : {1, 3, 8}) {
          GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " type=" << static_cast<int>(type) << " k=" << k
                              << " n_tokens=" << n_tokens);
          const std::vector<float> x = hard_activations(k / kBlock * n_tokens, rng);
          const size_t row_bytes = geb::kernels::q8_activation_row_bytes(k);
          std::vector<uint8_t> want(row_bytes * n_tokens, 0xAB), got(row_bytes * n_tokens, 0xCD);
          geb::kernels::prepare_q8_activations(x.data(), k, n_tokens, want.data());
          prepare_fn(x.data(), k, n_tokens, got.data());
          size_t first_difference = want.size();
          for (size_t i = 0; i < want.size(); ++i) {
            if (want[i] != got[i]) {
              first_difference = i;
              break;
            }
          }
          CHECK_MSG(first_difference == want.size(),
                    "byte " << first_difference << " of the prepared rows differs from the scalar reference");
        }
      }
    }
  }
}

// The scalar reference equals the sum over blocks of d_w * d_x * (integer dot), computed here in
// double from the dequantized weights, to F32 rounding.
GEB_TEST(quant_scalar_reference_matches_dequantized_sum) {
  const KernelTable& scalar = geb::kernel_table(geb::cpu::Tier::Scalar);
  std::mt19937 rng(11);
  for (WeightType type : {WeightType::Q8_0, WeightType::Q4_0}) {
    const int rows = 5, k = 96, n_tokens = 2;
    GEB_CONTEXT("type=" << static_cast<int>(type));
    const std::vector<uint8_t> w = random_weights(type, rows, k, rng);
    const std::vector<float> x = random_activations(k * n_tokens, rng);
    const Prepared p = prepare(x, k, n_tokens);
    std::vector<float> y(rows * n_tokens, std::numeric_limits<float>::quiet_NaN());
    const size_t row_bytes = geb::kernels::row_bytes(type, k);
    scalar.matmul[static_cast<int>(type)](w.data(), row_bytes, p.view, k, n_tokens, 0, rows, y.data(), rows);
    std::vector<float> wrow(k);
    for (int r = 0; r < rows; ++r) {
      scalar.dequantize_row[static_cast<int>(type)](w.data() + r * row_bytes, k, wrow.data());
      for (int t = 0; t < n_tokens; ++t) {
        const uint8_t* xrow = p.bytes.data() + t * p.view.row_bytes;
        double want = 0.0, magnitude = 0.0;
        for (int i = 0; i < k; ++i) {
          float dx;
          std::memcpy(&dx, xrow + k + (i / kBlock) * 4, 4);
          const double term = static_cast<double>(wrow[i]) * dx * static_cast<int8_t>(xrow[i]);
          want += term;
          magnitude += std::fabs(term);
        }
        GEB_CONTEXT("r=" << r << " t=" << t);
        CHECK_NEAR(y[t * rows + r], want, 1e-5 * magnitude + 1e-7);
        // and quantizing the activations costs little against the exact F32 product
        double exact = 0.0;
        for (int i = 0; i < k; ++i) exact += static_cast<double>(wrow[i]) * x[t * k + i];
        CHECK_NEAR(y[t * rows + r], exact, 0.02 * magnitude + 1e-6);
      }
    }
  }
}

GEB_TEST(quant_matmul_matches_scalar_on_every_tier) {
  const KernelTable& scalar = geb::kernel_table(geb::cpu::Tier::Scalar);
  std::mt19937 rng(3);
  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& table = geb::kernel_table(tier);
    for (WeightType type : {WeightType::Q8_0, WeightType::Q4_0}) {
      const int ti = static_cast<int>(type);
      REQUIRE(table.matmul[ti] != nullptr);
      REQUIRE(table.prepare[ti] != nullptr);
      // k = 16384 makes rows large enough that [r0, r1) spans several row tiles and 17 tokens
      // span two token chunks (matmul_quant_body.h), so the tiled prefill order is covered.
      for (int k : {32, 64, 96, 352, 2048, 16384}) {
        for (int n_tokens : {1, 2, 3, 4, 5, 9, 17}) {
          const int rows = 13, r0 = 2, r1 = 11, ldy = rows + 3;
          GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " type=" << ti << " k=" << k
                              << " n_tokens=" << n_tokens);
          const std::vector<uint8_t> w = random_weights(type, rows, k, rng);
          const std::vector<float> x = random_activations(k * n_tokens, rng);
          const Prepared p = prepare(x, k, n_tokens);
          const size_t row_bytes = geb::kernels::row_bytes(type, k);
          const float nan = std::numeric_limits<float>::quiet_NaN();
          std::vector<float> want(ldy * n_tokens, nan), got(ldy * n_tokens, nan);
          scalar.matmul[ti](w.data(), row_bytes, p.view, k, n_tokens, r0, r1, want.data(), ldy);
          table.matmul[ti](w.data(), row_bytes, p.view, k, n_tokens, r0, r1, got.data(), ldy);
          for (int t = 0; t < n_tokens; ++t) {
            for (int r = 0; r < ldy; ++r) {
              const float g = got[t * ldy + r];
              if (r < r0 || r >= r1) {
                CHECK_MSG(std::isnan(g), "r=" << r << " t=" << t << " written outside [r0, r1)");
                continue;
              }
              // the integer block dots are exact, so only the F32 scaling order differs
              const float s = want[t * ldy + r];
              CHECK_NEAR(g, s, 2e-5 * (std::fabs(s) + 1.0f) * std::sqrt(static_cast<float>(k) / kBlock));
            }
          }
        }
      }
    }
  }
}

// A weight stride larger than the row (rows inside a bigger tensor) must be honoured.
GEB_TEST(quant_matmul_honours_row_stride) {
  std::mt19937 rng(5);
  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& table = geb::kernel_table(tier);
    for (WeightType type : {WeightType::Q8_0, WeightType::Q4_0}) {
      const int ti = static_cast<int>(type);
      const int rows = 4, k = 64, n_tokens = 4;
      GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " type=" << ti);
      const size_t row_bytes = geb::kernels::row_bytes(type, k);
      const std::vector<uint8_t> packed = random_weights(type, rows, k, rng);
      std::vector<uint8_t> strided(2 * row_bytes * rows, 0x55);
      for (int r = 0; r < rows; ++r) std::memcpy(&strided[2 * row_bytes * r], &packed[row_bytes * r], row_bytes);
      const std::vector<float> x = random_activations(k * n_tokens, rng);
      const Prepared p = prepare(x, k, n_tokens);
      std::vector<float> a(rows * n_tokens), b(rows * n_tokens);
      table.matmul[ti](packed.data(), row_bytes, p.view, k, n_tokens, 0, rows, a.data(), rows);
      table.matmul[ti](strided.data(), 2 * row_bytes, p.view, k, n_tokens, 0, rows, b.data(), rows);
      for (size_t i = 0; i < a.size(); ++i) CHECK_EQ(a[i], b[i]);
    }
  }
}

// The repacked form (quant.h) of a random Q4_0 or Q8_0 matrix, with the padding bytes of the last
// group preset to 0xAB so a repack that skips them shows.
std::vector<uint8_t> repacked(WeightType type, const std::vector<uint8_t>& w, int rows, int k) {
  std::vector<uint8_t> out(geb::kernels::repacked_bytes(type, rows, k), 0xAB);
  const int64_t groups = (rows + geb::kernels::kRepackRows - 1) / geb::kernels::kRepackRows;
  const size_t row_bytes = geb::kernels::row_bytes(type, k);
  // two calls over disjoint group ranges, as the threads of the engine make them
  geb::kernels::repack_x8(type, w.data(), row_bytes, rows, k, 0, groups / 2, out.data());
  geb::kernels::repack_x8(type, w.data(), row_bytes, rows, k, groups / 2, groups, out.data());
  return out;
}

// Scalar reference over the repacked layout of `type`.
geb::kernels::MatmulFn scalar_x8(WeightType type) {
  return type == WeightType::Q4_0 ? geb::kernels::matmul_q4_0x8_scalar : geb::kernels::matmul_q8_0x8_scalar;
}

// The scalar x8 references sum in the order of the scalar Q4_0 and Q8_0 matmuls, so over the
// repacked copy they must give the same bits, for row counts that leave a partial last group.
GEB_TEST(quant_x8_scalar_equals_gguf_layout_scalar) {
  const KernelTable& scalar = geb::kernel_table(geb::cpu::Tier::Scalar);
  std::mt19937 rng(13);
  for (WeightType type : {WeightType::Q4_0, WeightType::Q8_0}) {
    const int ti = static_cast<int>(type);
    const size_t block_bytes = type == WeightType::Q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    const size_t group_block_bytes = 8 * block_bytes;
    for (int rows : {1, 7, 8, 9, 21}) {
      for (int k : {32, 96, 352}) {
        const int n_tokens = 3;
        GEB_CONTEXT("type=" << ti << " rows=" << rows << " k=" << k);
        const std::vector<uint8_t> w = random_weights(type, rows, k, rng);
        const std::vector<uint8_t> w8 = repacked(type, w, rows, k);
        const std::vector<float> x = random_activations(k * n_tokens, rng);
        const Prepared p = prepare(x, k, n_tokens);
        const size_t row_bytes = geb::kernels::row_bytes(type, k);
        std::vector<float> want(rows * n_tokens), got(rows * n_tokens);
        scalar.matmul[ti](w.data(), row_bytes, p.view, k, n_tokens, 0, rows, want.data(), rows);
        scalar_x8(type)(w8.data(), row_bytes, p.view, k, n_tokens, 0, rows, got.data(), rows);
        for (size_t i = 0; i < want.size(); ++i) CHECK_EQ(got[i], want[i]);
        // padding rows of the last group are zero: scale and quants
        for (int r = rows; r % geb::kernels::kRepackRows != 0; ++r) {
          const size_t group = static_cast<size_t>(r / 8) * 8 * row_bytes;
          const int i = r % 8;
          for (int b = 0; b < k / kBlock; ++b) {
            const uint8_t* block = w8.data() + group + b * group_block_bytes;
            CHECK_EQ(block[2 * i], 0);
            CHECK_EQ(block[2 * i + 1], 0);
            for (size_t c = 0; c < (block_bytes - 2) / 4; ++c) {
              for (int j = 0; j < 4; ++j) CHECK_EQ(block[16 + 32 * c + 4 * i + j], 0);
            }
          }
        }
      }
    }
  }
}

// Every tier with x8 kernels against the scalar matmuls on the GGUF layout: row counts and
// ranges that are not multiples of 8, token counts 1 to 9 that end in every tail of the
// four-token tile, a k large enough for several row tiles and token chunks, and k = 16480, whose
// 515 blocks take two spans of the AVX2 prefill tile (quant_x8_avx2.h). With one token, the
// group counts 1, 2, 4, 9 and 25 leave 1 to 4 side-by-side decode streams and short last spans.
GEB_TEST(quant_x8_matches_scalar_on_every_tier) {
  const KernelTable& scalar = geb::kernel_table(geb::cpu::Tier::Scalar);
  std::mt19937 rng(17);
  int kernels_run = 0;
  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& table = geb::kernel_table(tier);
    for (WeightType type : {WeightType::Q4_0, WeightType::Q8_0}) {
      const int ti = static_cast<int>(type);
      if (table.matmul_x8[ti] == nullptr) continue;
      ++kernels_run;
      struct Shape {
        int rows, r0, r1;
      };
      for (const Shape shape : {Shape{8, 0, 8}, Shape{13, 2, 11}, Shape{29, 5, 29}, Shape{64, 16, 48}, Shape{67, 0, 67},
                                 Shape{203, 3, 197}}) {
        for (int k : {32, 64, 96, 352, 2048, 16384, 16480}) {
          for (int n_tokens : {1, 2, 3, 4, 5, 6, 7, 8, 9, 17}) {
            if (k >= 16384 && shape.rows > 13) continue;  // keeps the case fast; 13 rows already span row tiles
            const int ldy = shape.rows + 3;
            GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " type=" << ti << " rows=" << shape.rows << " r0=" << shape.r0
                                << " r1=" << shape.r1 << " k=" << k << " n_tokens=" << n_tokens);
            const std::vector<uint8_t> w = random_weights(type, shape.rows, k, rng);
            const std::vector<uint8_t> w8 = repacked(type, w, shape.rows, k);
            const std::vector<float> x = random_activations(k * n_tokens, rng);
            const Prepared p = prepare(x, k, n_tokens);
            const size_t row_bytes = geb::kernels::row_bytes(type, k);
            const float nan = std::numeric_limits<float>::quiet_NaN();
            std::vector<float> want(ldy * n_tokens, nan), got(ldy * n_tokens, nan);
            scalar.matmul[ti](w.data(), row_bytes, p.view, k, n_tokens, shape.r0, shape.r1, want.data(), ldy);
            table.matmul_x8[ti](w8.data(), row_bytes, p.view, k, n_tokens, shape.r0, shape.r1, got.data(), ldy);
            for (int t = 0; t < n_tokens; ++t) {
              for (int r = 0; r < ldy; ++r) {
                const float g = got[t * ldy + r];
                if (r < shape.r0 || r >= shape.r1) {
                  CHECK_MSG(std::isnan(g), "r=" << r << " t=" << t << " written outside [r0, r1)");
                  continue;
                }
                // the integer block dots are exact, so only the F32 scaling order differs
                const float s = want[t * ldy + r];
                CHECK_NEAR(g, s, 2e-5 * (std::fabs(s) + 1.0f) * std::sqrt(static_cast<float>(k) / kBlock));
              }
            }
          }
        }
      }
    }
  }
#if defined(__x86_64__) || defined(_M_X64)
  // AVX2 has both kernels, so when the AVX2 tier runs this case must not be empty.
  bool avx2_listed = false;
  for (geb::cpu::Tier tier : geb::test::tiers()) avx2_listed = avx2_listed || tier == geb::cpu::Tier::Avx2;
  if (avx2_listed) CHECK_EQ(kernels_run >= 2, true);
#endif
}

}  // namespace
