// SPDX-License-Identifier: MIT
// A small test harness for the C++ kernel test executable (geb_kernel_tests), which builds
// without Node. A test file registers cases with GEB_TEST and checks with the CHECK macros;
// main.cpp runs every case and ends with the line "N passed, M failed" (M > 0 exits 1).
//
//   #include "harness.h"
//   GEB_TEST(rmsnorm_matches_scalar) {
//     for (geb::cpu::Tier tier : geb::test::tiers()) {
//       GEB_CONTEXT("tier=" << geb::cpu::tier_name(tier) << " n=" << n);
//       CHECK_NEAR(got[i], want[i], kTolF32);
//     }
//   }
//
// A failed check prints its file, line, the expression and each operand as name=value, plus
// every active GEB_CONTEXT, then the case goes on (use REQUIRE to stop the case instead).
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/cpu.h"

namespace geb::test {

using TestFn = void (*)();

struct TestCase {
  const char* name;
  TestFn fn;
  const char* file;
  int line;
};

// All registered cases, in registration order per file.
std::vector<TestCase>& registry();

struct Registrar {
  Registrar(const char* name, TestFn fn, const char* file, int line);
};

// The kernel tiers to test, lowest first: every tier this CPU supports, or, when GEB_CPU_ISA is
// set, those up to and including that tier. main() validates GEB_CPU_ISA before any case runs.
const std::vector<cpu::Tier>& tiers();

// Records a failed check in the running case and prints it with the active contexts.
void fail(const char* file, int line, const std::string& message);

// Thrown by REQUIRE to end the running case after a failed check.
struct RequireFailed {};

// Pushes a context line for the lifetime of the object; failures print every active one.
class ContextScope {
 public:
  explicit ContextScope(std::string text);
  ~ContextScope();
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;
};

// Formats a value for a failure message. Floating-point values print with 9 significant digits
// (enough to round-trip a float), and 8-bit integers print as numbers, not characters.
template <typename T>
std::string show(const T& value) {
  std::ostringstream out;
  if constexpr (std::is_floating_point_v<T>) {
    out.precision(9);
    out << value;
  } else if constexpr (std::is_same_v<T, int8_t> || std::is_same_v<T, uint8_t> ||
                       std::is_same_v<T, char> || std::is_same_v<T, signed char> ||
                       std::is_same_v<T, unsigned char>) {
    out << static_cast<int>(value);
  } else if constexpr (std::is_enum_v<T>) {
    out << static_cast<long long>(value);
  } else {
    out << value;
  }
  return out.str();
}

// Builds a message with stream syntax, formatting each value with show().
class Message {
 public:
  template <typename T>
  Message& operator<<(const T& value) {
    out_ << show(value);
    return *this;
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

}  // namespace geb::test

#define GEB_TEST_CONCAT_INNER(a, b) a##b
#define GEB_TEST_CONCAT(a, b) GEB_TEST_CONCAT_INNER(a, b)

// Defines and registers a test case. `name` must be a unique identifier in the executable.
#define GEB_TEST(name)                                                                  \
  static void geb_test_##name();                                                        \
  static const ::geb::test::Registrar geb_test_registrar_##name(#name, geb_test_##name, \
                                                                 __FILE__, __LINE__);   \
  static void geb_test_##name()

// Adds a context line, built with stream syntax, to failures in the rest of the scope.
#define GEB_CONTEXT(stream_expr)                                                            \
  const ::geb::test::ContextScope GEB_TEST_CONCAT(geb_test_context_, __LINE__)(             \
      (::geb::test::Message() << stream_expr).str())

#define CHECK(cond)                                                       \
  do {                                                                    \
    if (!(cond)) ::geb::test::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

// Like CHECK, with extra name=value detail built with stream syntax.
#define CHECK_MSG(cond, stream_expr)                                                   \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      ::geb::test::fail(__FILE__, __LINE__,                                            \
                        std::string("CHECK(" #cond ") ") +                             \
                            (::geb::test::Message() << stream_expr).str());              \
    }                                                                                  \
  } while (0)

#define GEB_TEST_COMPARE(op, a, b)                                                          \
  do {                                                                                      \
    const auto& geb_lhs = (a);                                                              \
    const auto& geb_rhs = (b);                                                              \
    if (!(geb_lhs op geb_rhs)) {                                                            \
      ::geb::test::fail(__FILE__, __LINE__,                                                 \
                        std::string("CHECK(" #a " " #op " " #b ") " #a "=") +               \
                            ::geb::test::show(geb_lhs) + " " #b "=" +                       \
                            ::geb::test::show(geb_rhs));                                    \
    }                                                                                       \
  } while (0)

#define CHECK_EQ(a, b) GEB_TEST_COMPARE(==, a, b)
#define CHECK_NE(a, b) GEB_TEST_COMPARE(!=, a, b)
#define CHECK_LT(a, b) GEB_TEST_COMPARE(<, a, b)
#define CHECK_LE(a, b) GEB_TEST_COMPARE(<=, a, b)
#define CHECK_GT(a, b) GEB_TEST_COMPARE(>, a, b)
#define CHECK_GE(a, b) GEB_TEST_COMPARE(>=, a, b)

// |a - b| <= tol, and NaN never passes (a kernel that leaves NaN in a pre-filled output fails).
#define CHECK_NEAR(a, b, tol)                                                               \
  do {                                                                                      \
    const double geb_lhs = static_cast<double>(a);                                          \
    const double geb_rhs = static_cast<double>(b);                                          \
    const double geb_tol = static_cast<double>(tol);                                        \
    if (!(std::fabs(geb_lhs - geb_rhs) <= geb_tol)) {                                       \
      ::geb::test::fail(__FILE__, __LINE__,                                                 \
                        std::string("CHECK_NEAR(" #a ", " #b ", " #tol ") " #a "=") +       \
                            ::geb::test::show(geb_lhs) + " " #b "=" +                       \
                            ::geb::test::show(geb_rhs) + " tol=" + ::geb::test::show(geb_tol)); \
    }                                                                                       \
  } while (0)

// Like CHECK, but ends the running case when it fails (for preconditions of later checks).
#define REQUIRE(cond)                                                         \
  do {                                                                        \
    if (!(cond)) {                                                            \
      ::geb::test::fail(__FILE__, __LINE__, "REQUIRE(" #cond ")");            \
      throw ::geb::test::RequireFailed{};                                     \
    }                                                                         \
  } while (0)
