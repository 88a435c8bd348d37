// SPDX-License-Identifier: MIT
// Run-time CPU feature detection and kernel-tier selection. Plain C++ with no N-API, so the
// engine, the binding and the kernel test executable share it. Detection runs once (CPUID and
// XGETBV on x86-64, HWCAP on aarch64 Linux, sysctl on Apple) and is cached for the process.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace geb::cpu {

// Instruction-set extensions the kernels care about. A flag is true only when the CPU has the
// extension AND the operating system saves the register state it needs (XCR0 on x86).
struct Features {
  // x86-64
  bool sse42 = false;
  bool avx = false;         // needs OS support for YMM state
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;     // needs OS support for opmask and ZMM state
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
  bool avx512bf16 = false;
  bool os_ymm = false;      // XCR0 bits 1-2: the OS saves SSE and YMM state
  bool os_zmm = false;      // XCR0 bits 5-7: the OS saves opmask, ZMM_Hi256 and Hi16_ZMM state
  // aarch64
  bool neon = false;        // Advanced SIMD (always present on aarch64)
  bool dotprod = false;     // SDOT/UDOT (Armv8.2-A optional, mandatory from Armv8.4-A)
  bool fp16 = false;        // half-precision vector arithmetic (FEAT_FP16)
};

// Kernel tiers, each a set of kernels compiled for one instruction-set level. Within one
// architecture a higher value needs everything a lower one needs (tier_supported() checks the
// whole chain), so a CPU that runs a tier also runs every lower one. Scalar runs everywhere.
enum class Tier : int {
  Scalar = 0,
  Avx2 = 1,        // AVX2 + FMA + F16C: Intel Haswell (2013) and later, AMD Zen and later
  Avx512 = 2,      // AVX-512 F/BW/VL/DQ: Intel Skylake-SP and later server parts, AMD Zen 4
  Avx512Vnni = 3,  // Avx512 + VNNI: Intel Cascade Lake, Ice Lake and later, AMD Zen 4
  Neon = 4,        // aarch64 Advanced SIMD: every 64-bit Arm core
  NeonDot = 5,     // Neon + dot product: Cortex-A55/A75 and later, Apple M1 and later, Graviton 2+
};

// Returns the features of this CPU. The first call detects; later calls return the cached copy.
Features detect();

// Returns the highest tier this CPU and OS support.
Tier best_tier();

// Returns true when the tier's instructions run on this CPU (and belong to this architecture).
bool tier_supported(Tier tier);

// Returns the tiers this CPU supports, lowest first. Always starts with Scalar.
std::vector<Tier> supported_tiers();

// Parses a tier name ("scalar", "avx2", "avx512", "avx512vnni", "neon", "neondot"; ASCII
// case-insensitive). Returns nullopt for an unknown name. Does not check CPU support.
std::optional<Tier> parse_tier(const char* name);

// Returns the lower-case name of a tier, as parse_tier accepts it.
const char* tier_name(Tier tier);

// Outcome of choosing a tier from a request such as the GEB_CPU_ISA environment variable.
enum class TierError : int {
  None = 0,
  UnknownName = 1,   // not a tier name: the JS layer raises InvalidArgumentError
  Unsupported = 2,   // a real tier this CPU or architecture cannot run: CpuFeatureError
};

struct TierChoice {
  Tier tier = Tier::Scalar;        // the chosen tier when error == None
  TierError error = TierError::None;
  std::string message;             // what was wrong and what to do, when error != None
};

// Chooses the tier for a request: nullptr or "" selects best_tier(); otherwise the named tier,
// which must be supported. Problems are reported in the result, not thrown.
TierChoice select_tier(const char* requested);

// Chooses the tier from the GEB_CPU_ISA environment variable (unset or empty: best tier). The
// addon does not call this, because the JS layer reads the variable and passes the tier down.
TierChoice select_tier_from_env();

// Returns a one-line summary of the detected features, e.g. "avx avx2 fma f16c".
std::string feature_summary(const Features& features);

// Returns the number of physical cores this process may run on (hyper-threads of one core count
// once). On Linux it reads the sysfs CPU topology, then /proc/cpuinfo; elsewhere, and when those
// fail, it falls back to std::thread::hardware_concurrency(). Always at least 1.
unsigned physical_core_count();

}  // namespace geb::cpu
