// SPDX-License-Identifier: MIT
// Kernel tests: every kernel of every tier this CPU supports against a double-precision
// reference computed here, on shapes that are not multiples of any vector width or block, with
// outputs pre-filled with NaN so a skipped element fails. Also the F16 conversions and the pool.
#include <atomic>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/bandwidth.h"
#include "core/kernel_table.h"
#include "core/thread_pool.h"
#include "harness.h"
#include "kernels/kernels.h"
#include "kernels/numeric.h"

namespace {

using geb::kernels::KernelTable;
using geb::kernels::WeightType;

// Tolerances, relative to the sum of |terms| of each output (so they do not depend on the
// values' scale). F32 accumulation over k terms in a different order differs by about
// k * 2^-24 of that sum; 16-bit weights are widened exactly, so they share the bound.
constexpr double kTolMatmulF32 = 2e-6;
constexpr double kTolMatmulF16 = 2e-6;
constexpr double kTolMatmulBf16 = 2e-6;
constexpr double kTolNorm = 2e-6;       // relative to |x * scale * w|
constexpr double kTolRope = 1e-6;       // absolute, inputs in [-1, 1]
constexpr double kTolAttention = 2e-6;  // absolute, values in [-1, 1]
constexpr double kTolSwiglu = 2e-6;     // relative to |silu(a) * b|
constexpr double kTolSoftmax = 2e-6;    // absolute on probabilities

const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> random_floats(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Weights stored as `type`, plus their exact F32 values for the reference.
struct StoredWeights {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

StoredWeights store_weights(WeightType type, const std::vector<float>& src) {
  StoredWeights w;
  w.values = src;
  if (type == WeightType::F32) {
    w.bytes.resize(src.size() * 4);
    std::memcpy(w.bytes.data(), src.data(), w.bytes.size());
    return w;
  }
  w.bytes.resize(src.size() * 2);
  for (size_t i = 0; i < src.size(); ++i) {
    uint16_t h;
    if (type == WeightType::F16) {
      h = geb::kernels::float_to_half(src[i]);
      w.values[i] = geb::kernels::half_to_float(h);
    } else {
      h = static_cast<uint16_t>(geb::kernels::float_to_bits(src[i]) >> 16);  // truncation is fine for test data
      w.values[i] = geb::kernels::bf16_to_float(h);
    }
    std::memcpy(w.bytes.data() + i * 2, &h, 2);
  }
  return w;
}

const char* type_name(WeightType type) {
  switch (type) {
    case WeightType::F32: return "f32";
    case WeightType::F16: return "f16";
    case WeightType::BF16: return "bf16";
    default: return "quantized";
  }
}

}  // namespace

GEB_TEST(half_conversion_round_trips_every_value) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = geb::kernels::half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      CHECK_MSG(std::isnan(geb::kernels::half_to_float(geb::kernels::float_to_half(f))), "h=" << h);
      continue;
    }
    CHECK_MSG(geb::kernels::float_to_half(f) == h, "h=" << h << " f=" << f);
  }
}

GEB_TEST(half_conversion_rounds_to_nearest_even) {
  // 1 + 2^-11 is halfway between 1 and the next half (1 + 2^-10): ties go to the even mantissa.
  CHECK_EQ(geb::kernels::float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  CHECK_EQ(geb::kernels::float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  CHECK_EQ(geb::kernels::float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  CHECK_EQ(geb::kernels::float_to_half(65504.0f), 0x7bff);
  CHECK_EQ(geb::kernels::float_to_half(65520.0f), 0x7c00);   // rounds past the largest half
  CHECK_EQ(geb::kernels::float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // tie with zero goes to even
  CHECK_EQ(geb::kernels::float_to_half(std::ldexp(1.5f, -25)), 0x0001);
  CHECK_EQ(geb::kernels::float_to_half(-std::ldexp(1.0f, -24)), 0x8001);
}

GEB_TEST(matmul_matches_reference) {
  struct Shape { int rows, k, n_tokens, r0, r1; };
  const Shape shapes[] = {
      {1, 1, 1, 0, 1},     {5, 7, 1, 0, 5},      {17, 33, 3, 0, 17}, {64, 256, 1, 0, 64},
      {31, 100, 5, 3, 29}, {3, 129, 9, 0, 3},    {8, 16, 4, 2, 8},   {40, 520, 2, 0, 40},
      {7, 1000, 7, 1, 6},  {2, 2048, 1, 0, 2},
      // Prefill GEMM: k over two or three panels with a partial vector at the end, and rows over
      // several row blocks plus a row remainder. The token counts leave every remainder of the
      // 4- and 6-token tiles, and the decode case has rows off the 8-row tile.
      {70, 2600, 7, 1, 68}, {65, 1537, 13, 0, 65}, {131, 1100, 11, 5, 127}, {13, 3001, 1, 0, 13},
      {97, 300, 23, 2, 96},
  };
  const WeightType types[] = {WeightType::F32, WeightType::F16, WeightType::BF16};
  const double tolerances[] = {kTolMatmulF32, kTolMatmulF16, kTolMatmulBf16};

  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& kt = geb::kernel_table(tier);
    for (int ti = 0; ti < 3; ++ti) {
      const WeightType type = types[ti];
      for (const Shape& s : shapes) {
        GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " type=" << type_name(type) << " rows=" << s.rows
                            << " k=" << s.k << " n_tokens=" << s.n_tokens << " r0=" << s.r0 << " r1=" << s.r1);
        const StoredWeights w = store_weights(type, random_floats(static_cast<size_t>(s.rows) * s.k, -1, 1, 11u + s.k));
        const std::vector<float> x = random_floats(static_cast<size_t>(s.n_tokens) * s.k, -1, 1, 7u + s.rows);
        const int ldy = s.rows + 3;
        std::vector<float> y(static_cast<size_t>(s.n_tokens) * ldy, kNaN);

        const geb::kernels::PreparedX px{x.data(), static_cast<size_t>(s.k) * 4};
        const size_t stride = geb::kernels::row_bytes(type, s.k);
        kt.matmul[static_cast<int>(type)](w.bytes.data(), stride, px, s.k, s.n_tokens, s.r0, s.r1, y.data(), ldy);

        for (int t = 0; t < s.n_tokens; ++t) {
          for (int r = 0; r < ldy; ++r) {
            const float got = y[static_cast<size_t>(t) * ldy + r];
            if (r < s.r0 || r >= s.r1) {
              CHECK_MSG(std::isnan(got), "row outside [r0, r1) was written: t=" << t << " r=" << r);
              continue;
            }
            double want = 0, scale = 0;
            for (int i = 0; i < s.k; ++i) {
              const double term = static_cast<double>(w.values[static_cast<size_t>(r) * s.k + i]) * x[static_cast<size_t>(t) * s.k + i];
              want += term;
              scale += std::fabs(term);
            }
            GEB_CONTEXT("t=" << t << " r=" << r);
            CHECK_NEAR(got, want, tolerances[ti] * scale + 1e-7);
          }
        }
      }
    }
  }
}

GEB_TEST(dequantize_row_widens_exactly) {
  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& kt = geb::kernel_table(tier);
    for (WeightType type : {WeightType::F32, WeightType::F16, WeightType::BF16}) {
      GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " type=" << type_name(type));
      const StoredWeights w = store_weights(type, random_floats(37, -3, 3, 5));
      std::vector<float> out(37, kNaN);
      kt.dequantize_row[static_cast<int>(type)](w.bytes.data(), 37, out.data());
      for (int i = 0; i < 37; ++i) CHECK_EQ(out[static_cast<size_t>(i)], w.values[static_cast<size_t>(i)]);
    }
  }
}

GEB_TEST(quantized_blocks_dequantize) {
  const KernelTable& kt = geb::kernel_table(geb::cpu::Tier::Scalar);
  geb::kernels::block_q8_0 q8[2];
  geb::kernels::block_q4_0 q4[2];
  for (int b = 0; b < 2; ++b) {
    q8[b].d = geb::kernels::float_to_half(0.5f * (b + 1));
    q4[b].d = geb::kernels::float_to_half(0.25f * (b + 1));
    for (int i = 0; i < 32; ++i) q8[b].qs[i] = static_cast<int8_t>(i - 16);
    for (int i = 0; i < 16; ++i) q4[b].qs[i] = static_cast<uint8_t>((i & 0x0f) | ((15 - i) << 4));
  }
  std::vector<float> out(64, kNaN);
  kt.dequantize_row[static_cast<int>(WeightType::Q8_0)](q8, 64, out.data());
  for (int b = 0; b < 2; ++b) {
    for (int i = 0; i < 32; ++i) CHECK_EQ(out[static_cast<size_t>(b * 32 + i)], 0.5f * (b + 1) * static_cast<float>(i - 16));
  }
  kt.dequantize_row[static_cast<int>(WeightType::Q4_0)](q4, 64, out.data());
  for (int b = 0; b < 2; ++b) {
    for (int i = 0; i < 16; ++i) {
      CHECK_EQ(out[static_cast<size_t>(b * 32 + i)], 0.25f * (b + 1) * static_cast<float>(i - 8));
      CHECK_EQ(out[static_cast<size_t>(b * 32 + 16 + i)], 0.25f * (b + 1) * static_cast<float>(15 - i - 8));
    }
  }
}

GEB_TEST(rmsnorm_matches_reference) {
  const int sizes[] = {1, 7, 16, 33, 256, 1000};
  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& kt = geb::kernel_table(tier);
    for (int n : sizes) {
      GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " n=" << n);
      const std::vector<float> x = random_floats(static_cast<size_t>(n), -4, 4, 3u + n);
      const std::vector<float> w = random_floats(static_cast<size_t>(n), 0.5f, 1.5f, 9u + n);
      std::vector<float> y(static_cast<size_t>(n) + 1, kNaN);
      kt.rmsnorm(x.data(), w.data(), n, 1e-5f, y.data());
      double sum = 0;
      for (float v : x) sum += static_cast<double>(v) * v;
      const double scale = 1.0 / std::sqrt(sum / n + 1e-5);
      for (int i = 0; i < n; ++i) {
        const double want = x[static_cast<size_t>(i)] * scale * w[static_cast<size_t>(i)];
        CHECK_NEAR(y[static_cast<size_t>(i)], want, kTolNorm * std::fabs(want) + 1e-7);
      }
      CHECK(std::isnan(y[static_cast<size_t>(n)]));
    }
  }
}

GEB_TEST(rope_rotates_adjacent_pairs) {
  struct Case { int n_heads, head_dim, rope_dim, pos; };
  const Case cases[] = {{3, 8, 8, 5}, {2, 32, 16, 100}, {1, 34, 34, 7}, {4, 128, 64, 4095}, {2, 40, 6, 1}, {1, 64, 64, 0}};
  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& kt = geb::kernel_table(tier);
    for (const Case& c : cases) {
      GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " n_heads=" << c.n_heads << " head_dim=" << c.head_dim
                          << " rope_dim=" << c.rope_dim << " pos=" << c.pos);
      std::vector<float> cos2(static_cast<size_t>(c.rope_dim)), sin2(static_cast<size_t>(c.rope_dim));
      for (int i = 0; i < c.rope_dim / 2; ++i) {
        const double angle = c.pos * std::pow(10000.0, -2.0 * i / c.rope_dim);
        cos2[2 * i] = cos2[2 * i + 1] = static_cast<float>(std::cos(angle));
        sin2[2 * i] = sin2[2 * i + 1] = static_cast<float>(std::sin(angle));
      }
      const std::vector<float> x0 = random_floats(static_cast<size_t>(c.n_heads) * c.head_dim, -1, 1, 17u + c.head_dim);
      std::vector<float> x = x0;
      kt.rope(x.data(), c.n_heads, c.head_dim, c.rope_dim, cos2.data(), sin2.data());
      for (int h = 0; h < c.n_heads; ++h) {
        const size_t base = static_cast<size_t>(h) * c.head_dim;
        for (int i = 0; i < c.head_dim; ++i) {
          double want = x0[base + i];
          if (i < c.rope_dim) {
            const int pair = i & ~1;
            const double a = x0[base + pair], b = x0[base + pair + 1];
            want = (i % 2 == 0) ? a * cos2[pair] - b * sin2[pair] : b * cos2[pair] + a * sin2[pair];
            CHECK_NEAR(x[base + i], want, kTolRope);
          } else {
            CHECK_MSG(x[base + i] == x0[base + i], "dim past rope_dim changed: h=" << h << " i=" << i);
          }
        }
      }
    }
  }
}

GEB_TEST(attention_matches_reference) {
  struct Case { int n_group, head_dim, n_keys; };
  const Case cases[] = {{1, 8, 1},  {4, 32, 63}, {4, 32, 64}, {5, 40, 65}, {9, 128, 200},
                        {2, 64, 129}, {1, 16, 7}, {12, 8, 70}};
  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& kt = geb::kernel_table(tier);
    for (bool f16 : {false, true}) {
      for (const Case& c : cases) {
        GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " kv=" << (f16 ? "f16" : "f32") << " n_group=" << c.n_group
                            << " head_dim=" << c.head_dim << " n_keys=" << c.n_keys);
        const int q_stride = c.head_dim + 5;
        const int out_stride = c.head_dim + 2;
        const std::vector<float> q = random_floats(static_cast<size_t>(c.n_group) * q_stride, -2, 2, 21u + c.n_keys);
        const WeightType kv_type = f16 ? WeightType::F16 : WeightType::F32;
        const StoredWeights k = store_weights(kv_type, random_floats(static_cast<size_t>(c.n_keys) * c.head_dim, -1, 1, 31u + c.head_dim));
        const StoredWeights v = store_weights(kv_type, random_floats(static_cast<size_t>(c.n_keys) * c.head_dim, -1, 1, 41u + c.n_group));
        std::vector<float> out(static_cast<size_t>(c.n_group) * out_stride, kNaN);
        std::vector<float> scratch(geb::kernels::attention_scratch_floats(c.n_group, c.head_dim), kNaN);
        const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
        (f16 ? kt.attention_f16kv : kt.attention_f32kv)(q.data(), q_stride, c.n_group, c.head_dim, k.bytes.data(), v.bytes.data(),
                                                        c.n_keys, scale, out.data(), out_stride, scratch.data());

        for (int g = 0; g < c.n_group; ++g) {
          std::vector<double> s(static_cast<size_t>(c.n_keys));
          double max = -INFINITY;
          for (int j = 0; j < c.n_keys; ++j) {
            double dot = 0;
            for (int i = 0; i < c.head_dim; ++i) {
              dot += static_cast<double>(q[static_cast<size_t>(g) * q_stride + i]) * k.values[static_cast<size_t>(j) * c.head_dim + i];
            }
            s[static_cast<size_t>(j)] = dot * scale;
            max = std::fmax(max, s[static_cast<size_t>(j)]);
          }
          double sum = 0;
          for (double& p : s) sum += (p = std::exp(p - max));
          for (int i = 0; i < out_stride; ++i) {
            const float got = out[static_cast<size_t>(g) * out_stride + i];
            if (i >= c.head_dim) {
              CHECK_MSG(std::isnan(got), "padding written: g=" << g << " i=" << i);
              continue;
            }
            double want = 0;
            for (int j = 0; j < c.n_keys; ++j) want += s[static_cast<size_t>(j)] * v.values[static_cast<size_t>(j) * c.head_dim + i];
            want /= sum;
            GEB_CONTEXT("g=" << g << " i=" << i);
            CHECK_NEAR(got, want, kTolAttention);
          }
        }
      }
    }
  }
}

GEB_TEST(swiglu_matches_reference) {
  const int sizes[] = {1, 7, 8, 17, 1000};
  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& kt = geb::kernel_table(tier);
    for (int n : sizes) {
      GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " n=" << n);
      const std::vector<float> a = random_floats(static_cast<size_t>(n), -30, 30, 51u + n);
      const std::vector<float> b = random_floats(static_cast<size_t>(n), -2, 2, 61u + n);
      std::vector<float> y(static_cast<size_t>(n) + 1, kNaN);
      kt.swiglu(a.data(), b.data(), n, y.data());
      for (int i = 0; i < n; ++i) {
        const double ai = a[static_cast<size_t>(i)];
        const double want = ai / (1.0 + std::exp(-ai)) * b[static_cast<size_t>(i)];
        GEB_CONTEXT("i=" << i << " a=" << a[static_cast<size_t>(i)]);
        CHECK_NEAR(y[static_cast<size_t>(i)], want, kTolSwiglu * std::fabs(want) + 1e-30);
      }
      CHECK(std::isnan(y[static_cast<size_t>(n)]));
    }
  }
}

GEB_TEST(softmax_matches_reference) {
  const int sizes[] = {1, 5, 16, 100};
  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& kt = geb::kernel_table(tier);
    for (int n : sizes) {
      GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " n=" << n);
      const std::vector<float> x0 = random_floats(static_cast<size_t>(n), -20, 20, 71u + n);
      std::vector<float> x = x0;
      kt.softmax(x.data(), n);
      double max = -INFINITY, sum = 0;
      for (float v : x0) max = std::fmax(max, v);
      for (float v : x0) sum += std::exp(v - max);
      for (int i = 0; i < n; ++i) CHECK_NEAR(x[static_cast<size_t>(i)], std::exp(x0[static_cast<size_t>(i)] - max) / sum, kTolSoftmax);
    }
  }
}

GEB_TEST(thread_pool_visits_every_item_once) {
  for (int threads : {1, 2, 3}) {
    geb::ThreadPool pool(threads);
    for (int round = 0; round < 100; ++round) {
      const int64_t n = 1 + (round * 37) % 1000;
      std::vector<std::atomic<int>> visits(static_cast<size_t>(n));
      for (auto& v : visits) v.store(0);
      std::atomic<int> bad_thread{0};
      pool.parallel_for(n, 1 + round % 7, [&](int64_t begin, int64_t end, int thread) {
        if (thread < 0 || thread >= threads) bad_thread.fetch_add(1);
        for (int64_t i = begin; i < end; ++i) visits[static_cast<size_t>(i)].fetch_add(1);
      });
      GEB_CONTEXT("threads=" << threads << " round=" << round << " n=" << n);
      CHECK_EQ(bad_thread.load(), 0);
      int wrong = 0;
      for (auto& v : visits) wrong += v.load() != 1;
      CHECK_EQ(wrong, 0);
    }
  }
}

// The bandwidth probe's read loop must read every byte: changing any one changes its result.
GEB_TEST(read_sum_depends_on_every_byte) {
  constexpr size_t kBytes = 4096;
  auto* buffer = static_cast<unsigned char*>(std::aligned_alloc(64, kBytes));
  REQUIRE(buffer != nullptr);
  std::mt19937 rng(17);
  for (size_t i = 0; i < kBytes; ++i) buffer[i] = static_cast<unsigned char>(rng());
  for (geb::cpu::Tier tier : geb::test::tiers()) {
    const KernelTable& table = geb::kernel_table(tier);
    GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier));
    REQUIRE(table.read_sum != nullptr);
    const uint64_t base = table.read_sum(buffer, kBytes);
    int unchanged = 0;
    for (size_t i = 0; i < kBytes; i += 61) {
      buffer[i] ^= 0x10;
      unchanged += table.read_sum(buffer, kBytes) == base;
      buffer[i] ^= 0x10;
    }
    CHECK_EQ(unchanged, 0);
  }
  std::free(buffer);
}

GEB_TEST(read_bandwidth_reports_a_positive_rate) {
  const KernelTable& table = geb::kernel_table(geb::test::tiers().back());
  for (int threads : {1, 2}) {
    const geb::BandwidthResult r = geb::measure_read_bandwidth(table, 3 << 20, threads, 2);
    CHECK_EQ(r.threads, threads);
    CHECK(r.best_seconds > 0.0);
    CHECK(r.bytes_per_second > 1e6);
  }
}
