// SPDX-License-Identifier: MIT
// Tests of CPU feature detection and kernel-tier selection (native/cpu). On Linux x86-64 the
// detected features are cross-checked against the kernel's own view in /proc/cpuinfo.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cpu/cpu.h"
#include "harness.h"

namespace {

using geb::cpu::Tier;

const Tier kAllTiers[] = {Tier::Scalar, Tier::Avx2,  Tier::Avx512,
                          Tier::Avx512Vnni, Tier::Neon, Tier::NeonDot};

// Flags of the first processor in /proc/cpuinfo ("flags" on x86, "Features" on arm64), or an
// empty set when the file is missing.
std::set<std::string> proc_cpuinfo_flags() {
  std::set<std::string> flags;
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0 && line.rfind("Features", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::string word;
    while (words >> word) flags.insert(word);
    break;
  }
  return flags;
}

}  // namespace

GEB_TEST(tier_names_round_trip) {
  for (Tier tier : kAllTiers) {
    const char* name = geb::cpu::tier_name(tier);
    GEB_CONTEXT("tier=" << name);
    const auto parsed = geb::cpu::parse_tier(name);
    REQUIRE(parsed.has_value());
    CHECK_EQ(*parsed, tier);
  }
}

GEB_TEST(parse_tier_ignores_case_and_rejects_unknown) {
  CHECK(geb::cpu::parse_tier("AVX2") == Tier::Avx2);
  CHECK(geb::cpu::parse_tier("Avx512VNNI") == Tier::Avx512Vnni);
  CHECK(geb::cpu::parse_tier("NeonDot") == Tier::NeonDot);
  CHECK(!geb::cpu::parse_tier("avx").has_value());
  CHECK(!geb::cpu::parse_tier("avx2 ").has_value());
  CHECK(!geb::cpu::parse_tier("sse").has_value());
  CHECK(!geb::cpu::parse_tier("").has_value());
  CHECK(!geb::cpu::parse_tier(nullptr).has_value());
}

GEB_TEST(supported_tiers_ascend_from_scalar) {
  const std::vector<Tier> tiers = geb::cpu::supported_tiers();
  REQUIRE(!tiers.empty());
  CHECK_EQ(tiers.front(), Tier::Scalar);
  CHECK_EQ(tiers.back(), geb::cpu::best_tier());
  CHECK(std::is_sorted(tiers.begin(), tiers.end()));
  for (Tier tier : kAllTiers) {
    GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier));
    const bool listed = std::find(tiers.begin(), tiers.end(), tier) != tiers.end();
    CHECK_EQ(listed, geb::cpu::tier_supported(tier));
  }
}

GEB_TEST(tiers_match_architecture) {
#if defined(__x86_64__) || defined(_M_X64)
  CHECK(!geb::cpu::tier_supported(Tier::Neon));
  CHECK(!geb::cpu::tier_supported(Tier::NeonDot));
#elif defined(__aarch64__) || defined(_M_ARM64)
  CHECK(geb::cpu::tier_supported(Tier::Neon));
  CHECK(!geb::cpu::tier_supported(Tier::Avx2));
#endif
  // A higher tier of one family always implies the lower ones.
  if (geb::cpu::tier_supported(Tier::Avx512Vnni)) CHECK(geb::cpu::tier_supported(Tier::Avx512));
  if (geb::cpu::tier_supported(Tier::Avx512)) CHECK(geb::cpu::tier_supported(Tier::Avx2));
  if (geb::cpu::tier_supported(Tier::NeonDot)) CHECK(geb::cpu::tier_supported(Tier::Neon));
}

GEB_TEST(features_are_consistent) {
  const geb::cpu::Features f = geb::cpu::detect();
  if (f.avx) CHECK(f.os_ymm);
  if (f.avx2) CHECK(f.avx);
  if (f.avx512f) CHECK(f.os_zmm);
  if (f.os_zmm) CHECK(f.os_ymm);
  if (f.avx512bw || f.avx512vl || f.avx512dq || f.avx512vnni || f.avx512bf16) CHECK(f.avx512f);
  if (f.dotprod || f.fp16) CHECK(f.neon);
}

// Under qemu-user (scripts/test-qemu-westmere.sh and scripts/test-aarch64-qemu.sh set
// GEB_TEST_EMULATED_CPU=1) /proc/cpuinfo still describes the host, so there a detected feature
// must only be one the host also has.
GEB_TEST(features_match_proc_cpuinfo) {
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
  const std::set<std::string> flags = proc_cpuinfo_flags();
  REQUIRE(!flags.empty());
  const geb::cpu::Features f = geb::cpu::detect();
  const char* emulated_env = std::getenv("GEB_TEST_EMULATED_CPU");
  const bool emulated = emulated_env != nullptr && std::string(emulated_env) == "1";
  auto expect = [&](const char* flag, bool detected) {
    GEB_CONTEXT("flag=" << flag << " emulated=" << emulated);
    const bool listed = flags.count(flag) > 0;
    if (emulated) {
      if (detected) CHECK(listed);
    } else {
      CHECK_EQ(detected, listed);
    }
  };
#if defined(__x86_64__)
  // Linux clears these flags when it does not enable the register state, as XGETBV checks.
  expect("avx", f.avx);
  expect("avx2", f.avx2);
  expect("fma", f.fma);
  expect("f16c", f.f16c);
  expect("avx512f", f.avx512f);
  expect("avx512bw", f.avx512bw);
  expect("avx512vl", f.avx512vl);
  expect("avx512dq", f.avx512dq);
  expect("avx512_vnni", f.avx512vnni);
  expect("avx512_bf16", f.avx512bf16);
#else
  // qemu-user on an x86-64 host (scripts/test-aarch64-qemu.sh) shows the host's own file, whose
  // x86 flags do not describe the emulated core. Every aarch64 Linux lists "fp", so its absence
  // marks that case, and only Advanced SIMD, which every aarch64 core has, can be checked there.
  if (emulated && flags.count("fp") == 0) {
    CHECK(f.neon);
  } else {
    expect("asimd", f.neon);
    expect("asimddp", f.dotprod);
  }
#endif
#else
  CHECK(geb::cpu::tier_supported(Tier::Scalar));
#endif
}

GEB_TEST(select_tier_defaults_to_best) {
  for (const char* request : {static_cast<const char*>(nullptr), ""}) {
    const geb::cpu::TierChoice choice = geb::cpu::select_tier(request);
    CHECK_EQ(choice.error, geb::cpu::TierError::None);
    CHECK_EQ(choice.tier, geb::cpu::best_tier());
  }
  const geb::cpu::TierChoice scalar = geb::cpu::select_tier("scalar");
  CHECK_EQ(scalar.error, geb::cpu::TierError::None);
  CHECK_EQ(scalar.tier, Tier::Scalar);
}

GEB_TEST(select_tier_rejects_unknown_and_unsupported) {
  const geb::cpu::TierChoice unknown = geb::cpu::select_tier("sse9");
  CHECK_EQ(unknown.error, geb::cpu::TierError::UnknownName);
  CHECK_MSG(unknown.message.find("sse9") != std::string::npos, "message=" << unknown.message);

  // Some tier of the other architecture is never supported.
#if defined(__aarch64__) || defined(_M_ARM64)
  const char* foreign = "avx2";
#else
  const char* foreign = "neon";
#endif
  const geb::cpu::TierChoice unsupported = geb::cpu::select_tier(foreign);
  CHECK_EQ(unsupported.error, geb::cpu::TierError::Unsupported);
  CHECK_MSG(unsupported.message.find("scalar") != std::string::npos,
            "message=" << unsupported.message);
}

GEB_TEST(detect_is_stable_across_threads) {
  const std::string expected = geb::cpu::feature_summary(geb::cpu::detect());
  std::vector<std::string> seen(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < seen.size(); ++i) {
    threads.emplace_back([&seen, i] { seen[i] = geb::cpu::feature_summary(geb::cpu::detect()); });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < seen.size(); ++i) {
    GEB_CONTEXT("thread=" << i);
    CHECK_EQ(seen[i], expected);
  }
}

GEB_TEST(physical_core_count_is_plausible) {
  const unsigned cores = geb::cpu::physical_core_count();
  CHECK_GE(cores, 1u);
  const unsigned logical = std::thread::hardware_concurrency();
  if (logical > 0) CHECK_LE(cores, logical);
}

GEB_TEST(tiers_under_test_respect_request) {
  const std::vector<Tier>& tiers = geb::test::tiers();
  REQUIRE(!tiers.empty());
  CHECK_EQ(tiers.front(), Tier::Scalar);
  const geb::cpu::TierChoice choice = geb::cpu::select_tier_from_env();
  CHECK_EQ(tiers.back(), choice.tier);
}
