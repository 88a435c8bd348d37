// SPDX-License-Identifier: MIT
// Runner of the C++ kernel test executable: runs every GEB_TEST case (or those whose name
// contains argv[1]) and prints "N passed, M failed" as its last line. Honours GEB_CPU_ISA like
// the addon does: an unknown or unsupported tier is an error, a supported one limits the tiers
// that tests iterate over.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "harness.h"

namespace geb::test {
namespace {

struct RunState {
  int failures_in_case = 0;
  std::vector<std::string> contexts;
  std::vector<cpu::Tier> tiers;
};

RunState& state() {
  static RunState s;
  return s;
}

}  // namespace

std::vector<TestCase>& registry() {
  static std::vector<TestCase> cases;
  return cases;
}

Registrar::Registrar(const char* name, TestFn fn, const char* file, int line) {
  registry().push_back(TestCase{name, fn, file, line});
}

const std::vector<cpu::Tier>& tiers() { return state().tiers; }

void fail(const char* file, int line, const std::string& message) {
  ++state().failures_in_case;
  std::printf("  %s:%d: %s\n", file, line, message.c_str());
  for (const std::string& context : state().contexts) std::printf("    with %s\n", context.c_str());
}

ContextScope::ContextScope(std::string text) { state().contexts.push_back(std::move(text)); }

ContextScope::~ContextScope() { state().contexts.pop_back(); }

}  // namespace geb::test

int main(int argc, char** argv) {
  using geb::test::TestCase;
  namespace cpu = geb::cpu;

  const cpu::TierChoice choice = cpu::select_tier_from_env();
  if (choice.error != cpu::TierError::None) {
    std::printf("GEB_CPU_ISA: %s\n", choice.message.c_str());
    return 2;
  }
  for (cpu::Tier tier : cpu::supported_tiers()) {
    if (static_cast<int>(tier) <= static_cast<int>(choice.tier)) {
      geb::test::state().tiers.push_back(tier);
    }
  }

  std::printf("cpu features: %s\n", cpu::feature_summary(cpu::detect()).c_str());
  std::printf("tiers under test:");
  for (cpu::Tier tier : geb::test::tiers()) std::printf(" %s", cpu::tier_name(tier));
  std::printf("\n");

  const char* filter = argc > 1 ? argv[1] : nullptr;
  int passed = 0;
  int failed = 0;
  for (const TestCase& test : geb::test::registry()) {
    if (filter != nullptr && std::strstr(test.name, filter) == nullptr) continue;
    geb::test::state().failures_in_case = 0;
    geb::test::state().contexts.clear();
    const auto start = std::chrono::steady_clock::now();
    try {
      test.fn();
    } catch (const geb::test::RequireFailed&) {
      // Already recorded by REQUIRE.
    } catch (const std::exception& e) {
      geb::test::fail(test.file, test.line, std::string("uncaught exception: ") + e.what());
    } catch (...) {
      geb::test::fail(test.file, test.line, "uncaught non-standard exception");
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (geb::test::state().failures_in_case == 0) {
      ++passed;
      std::printf("ok   %s (%.1f ms)\n", test.name, ms);
    } else {
      ++failed;
      std::printf("FAIL %s (%d failed checks)\n", test.name, geb::test::state().failures_in_case);
    }
  }
  if (passed + failed == 0) {
    std::printf("no test case matched%s%s\n", filter ? " the filter " : "", filter ? filter : "");
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  std::fflush(stdout);
  return failed == 0 && passed > 0 ? 0 : 1;
}
