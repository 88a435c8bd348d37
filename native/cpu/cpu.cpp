// SPDX-License-Identifier: MIT
// CPU feature detection and tier selection (see cpu.h). This file is compiled with baseline
// flags only: it must run on any x86-64 or aarch64 CPU, because it decides which faster code
// may run.
#include "cpu.h"

#include <cctype>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#define GEB_CPU_X86_64 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#elif defined(__aarch64__) || defined(_M_ARM64)
#define GEB_CPU_AARCH64 1
#if defined(__linux__)
#include <sys/auxv.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#endif

namespace geb::cpu {
namespace {

#if defined(GEB_CPU_X86_64)

struct CpuidRegs {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegs cpuid(unsigned leaf, unsigned subleaf) {
  CpuidRegs r;
#if defined(_MSC_VER)
  int regs[4];
  __cpuidex(regs, static_cast<int>(leaf), static_cast<int>(subleaf));
  r.eax = static_cast<unsigned>(regs[0]);
  r.ebx = static_cast<unsigned>(regs[1]);
  r.ecx = static_cast<unsigned>(regs[2]);
  r.edx = static_cast<unsigned>(regs[3]);
#else
  __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
#endif
  return r;
}

// XGETBV through inline assembly, because the _xgetbv intrinsic needs -mxsave and this file
// is built with baseline flags. Call only when CPUID reports OSXSAVE.
unsigned long long read_xcr0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
#endif
}

bool bit(unsigned value, int index) { return ((value >> index) & 1u) != 0; }

Features detect_x86() {
  Features f;
  const unsigned max_leaf = cpuid(0, 0).eax;
  if (max_leaf < 1) return f;

  // Leaf 1: SSE4.2, FMA, OSXSAVE, AVX and F16C live in ECX.
  const CpuidRegs l1 = cpuid(1, 0);
  f.sse42 = bit(l1.ecx, 20);
  const bool osxsave = bit(l1.ecx, 27);
  const bool cpu_avx = bit(l1.ecx, 28);
  const bool cpu_fma = bit(l1.ecx, 12);
  const bool cpu_f16c = bit(l1.ecx, 29);

  // The OS must save the wider registers on context switches, or using them corrupts state.
  // XCR0 bit 1 = SSE, bit 2 = AVX (upper YMM); bits 5, 6, 7 = opmask, ZMM0-15 upper, ZMM16-31.
  if (osxsave) {
    const unsigned long long xcr0 = read_xcr0();
    f.os_ymm = (xcr0 & 0x6) == 0x6;
    f.os_zmm = f.os_ymm && (xcr0 & 0xE0) == 0xE0;
  }
  f.avx = cpu_avx && f.os_ymm;
  f.fma = cpu_fma && f.os_ymm;
  f.f16c = cpu_f16c && f.os_ymm;
  if (max_leaf < 7) return f;

  // Leaf 7 subleaf 0: AVX2 and AVX-512 F/DQ/BW/VL in EBX, AVX512_VNNI in ECX.
  const CpuidRegs l7 = cpuid(7, 0);
  f.avx2 = f.avx && bit(l7.ebx, 5);
  f.avx512f = f.os_zmm && bit(l7.ebx, 16);
  f.avx512dq = f.avx512f && bit(l7.ebx, 17);
  f.avx512bw = f.avx512f && bit(l7.ebx, 30);
  f.avx512vl = f.avx512f && bit(l7.ebx, 31);
  f.avx512vnni = f.avx512f && bit(l7.ecx, 11);

  // Leaf 7 subleaf 1 (present when subleaf 0 reports max subleaf >= 1): AVX512_BF16 in EAX.
  if (l7.eax >= 1) {
    const CpuidRegs l71 = cpuid(7, 1);
    f.avx512bf16 = f.avx512f && bit(l71.eax, 5);
  }
  return f;
}

#endif  // GEB_CPU_X86_64

#if defined(GEB_CPU_AARCH64)

#if defined(__APPLE__)
bool sysctl_flag(const char* name) {
  int value = 0;
  size_t size = sizeof(value);
  if (sysctlbyname(name, &value, &size, nullptr, 0) != 0) return false;
  return value != 0;
}
#endif

Features detect_aarch64() {
  Features f;
  f.neon = true;  // Advanced SIMD is mandatory in the AArch64 execution state.
#if defined(__linux__)
  // Bit numbers from the Linux arm64 uapi <asm/hwcap.h>, spelled out so old headers still build.
  constexpr unsigned long kHwcapAsimd = 1ul << 1;
  constexpr unsigned long kHwcapAsimdHp = 1ul << 10;
  constexpr unsigned long kHwcapAsimdDp = 1ul << 20;
  const unsigned long hwcap = getauxval(AT_HWCAP);
  f.neon = (hwcap & kHwcapAsimd) != 0;
  f.fp16 = f.neon && (hwcap & kHwcapAsimdHp) != 0;
  f.dotprod = f.neon && (hwcap & kHwcapAsimdDp) != 0;
#elif defined(__APPLE__)
  f.fp16 = sysctl_flag("hw.optional.arm.FEAT_FP16");
  f.dotprod = sysctl_flag("hw.optional.arm.FEAT_DotProd");
#else
  // NOTE: no detection on this OS yet, so only plain NEON is assumed.
#endif
  return f;
}

#endif  // GEB_CPU_AARCH64

Features detect_uncached() {
#if defined(GEB_CPU_X86_64)
  return detect_x86();
#elif defined(GEB_CPU_AARCH64)
  return detect_aarch64();
#else
  return Features{};
#endif
}

struct TierInfo {
  Tier tier;
  const char* name;
};

constexpr TierInfo kTiers[] = {
    {Tier::Scalar, "scalar"},   {Tier::Avx2, "avx2"}, {Tier::Avx512, "avx512"},
    {Tier::Avx512Vnni, "avx512vnni"}, {Tier::Neon, "neon"}, {Tier::NeonDot, "neondot"},
};

bool equals_ignore_case(const char* a, const char* b) {
  for (; *a != '\0' && *b != '\0'; ++a, ++b) {
    if (std::tolower(static_cast<unsigned char>(*a)) != std::tolower(static_cast<unsigned char>(*b))) {
      return false;
    }
  }
  return *a == '\0' && *b == '\0';
}

std::string supported_list() {
  std::string out;
  for (Tier t : supported_tiers()) {
    if (!out.empty()) out += ", ";
    out += tier_name(t);
  }
  return out;
}

}  // namespace

Features detect() {
  // A function-local static is initialized once even when several threads (or worker_threads
  // loading the addon) call this at the same time.
  static const Features cached = detect_uncached();
  return cached;
}

bool tier_supported(Tier tier) {
  const Features f = detect();
  switch (tier) {
    case Tier::Scalar:
      return true;
    case Tier::Avx2:
      return f.avx2 && f.fma && f.f16c;
    case Tier::Avx512:
      return tier_supported(Tier::Avx2) && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
    case Tier::Avx512Vnni:
      return tier_supported(Tier::Avx512) && f.avx512vnni;
    case Tier::Neon:
      return f.neon;
    case Tier::NeonDot:
      return f.neon && f.dotprod;
  }
  return false;
}

std::vector<Tier> supported_tiers() {
  std::vector<Tier> out;
  for (const TierInfo& info : kTiers) {
    if (tier_supported(info.tier)) out.push_back(info.tier);
  }
  return out;
}

Tier best_tier() { return supported_tiers().back(); }

std::optional<Tier> parse_tier(const char* name) {
  if (name == nullptr) return std::nullopt;
  for (const TierInfo& info : kTiers) {
    if (equals_ignore_case(name, info.name)) return info.tier;
  }
  return std::nullopt;
}

const char* tier_name(Tier tier) {
  for (const TierInfo& info : kTiers) {
    if (info.tier == tier) return info.name;
  }
  return "unknown";
}

TierChoice select_tier(const char* requested) {
  TierChoice choice;
  if (requested == nullptr || requested[0] == '\0') {
    choice.tier = best_tier();
    return choice;
  }
  const std::optional<Tier> parsed = parse_tier(requested);
  if (!parsed) {
    choice.error = TierError::UnknownName;
    choice.message = std::string("unknown kernel tier \"") + requested +
                     "\"; use one of: scalar, avx2, avx512, avx512vnni, neon, neondot";
    return choice;
  }
  if (!tier_supported(*parsed)) {
    choice.error = TierError::Unsupported;
    choice.message = std::string("kernel tier \"") + tier_name(*parsed) +
                     "\" is not supported by this CPU; supported tiers: " + supported_list();
    return choice;
  }
  choice.tier = *parsed;
  return choice;
}

TierChoice select_tier_from_env() { return select_tier(std::getenv("GEB_CPU_ISA")); }

std::string feature_summary(const Features& f) {
  struct Named {
    bool on;
    const char* name;
  };
  const Named all[] = {
      {f.sse42, "sse4.2"},         {f.avx, "avx"},           {f.avx2, "avx2"},
      {f.fma, "fma"},              {f.f16c, "f16c"},         {f.avx512f, "avx512f"},
      {f.avx512bw, "avx512bw"},    {f.avx512vl, "avx512vl"}, {f.avx512dq, "avx512dq"},
      {f.avx512vnni, "avx512vnni"}, {f.avx512bf16, "avx512bf16"}, {f.neon, "neon"},
      {f.dotprod, "dotprod"},      {f.fp16, "fp16"},
  };
  std::string out;
  for (const Named& n : all) {
    if (!n.on) continue;
    if (!out.empty()) out += ' ';
    out += n.name;
  }
  return out;
}

}  // namespace geb::cpu
