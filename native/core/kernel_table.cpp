// Builds one kernel table per tier from the per-family fillers of each ISA translation unit.
// Higher tiers start from the scalar table and overwrite what they implement, so a family that
// has no kernel at some tier falls back to the scalar reference.
#include "kernel_table.h"

#include <string>

#include "error.h"

namespace geb {
namespace {

kernels::KernelTable scalar_table() {
  kernels::KernelTable t{};
  t.name = "scalar";
  kernels::fill_matmul_scalar(t);
  kernels::fill_matmul_q8_0_scalar(t);
  kernels::fill_matmul_q4_0_scalar(t);
  kernels::fill_norm_scalar(t);
  kernels::fill_rope_scalar(t);
  kernels::fill_attention_scalar(t);
  kernels::fill_activation_scalar(t);
  kernels::fill_memory_scalar(t);
  return t;
}

#if defined(__x86_64__) || defined(_M_X64)
kernels::KernelTable avx2_table() {
  kernels::KernelTable t = scalar_table();
  t.name = "avx2";
  kernels::fill_matmul_avx2(t);
  kernels::fill_matmul_q8_0_avx2(t);
  kernels::fill_matmul_q4_0_avx2(t);
  kernels::fill_norm_avx2(t);
  kernels::fill_rope_avx2(t);
  kernels::fill_attention_avx2(t);
  kernels::fill_activation_avx2(t);
  kernels::fill_memory_avx2(t);
  return t;
}

kernels::KernelTable avx512_table(const char* name, bool vnni) {
  kernels::KernelTable t = scalar_table();
  t.name = name;
  kernels::fill_matmul_avx512(t);
  if (vnni) {
    kernels::fill_matmul_q8_0_avx512vnni(t);
    kernels::fill_matmul_q4_0_avx512vnni(t);
  } else {
    kernels::fill_matmul_q8_0_avx512(t);
    kernels::fill_matmul_q4_0_avx512(t);
  }
  kernels::fill_norm_avx512(t);
  kernels::fill_rope_avx512(t);
  kernels::fill_attention_avx512(t);
  kernels::fill_activation_avx512(t);
  // Every CPU with AVX-512 has AVX2, and 256-bit loads already keep a core's memory port busy.
  kernels::fill_memory_avx2(t);
  return t;
}
#endif

#if defined(__aarch64__)
kernels::KernelTable neon_table(const char* name, bool dotprod) {
  kernels::KernelTable t = scalar_table();
  t.name = name;
  kernels::fill_matmul_neon(t);
  if (dotprod) {
    kernels::fill_matmul_q8_0_neondot(t);
    kernels::fill_matmul_q4_0_neondot(t);
  } else {
    kernels::fill_matmul_q8_0_neon(t);
    kernels::fill_matmul_q4_0_neon(t);
  }
  kernels::fill_norm_neon(t);
  kernels::fill_rope_neon(t);
  kernels::fill_attention_neon(t);
  kernels::fill_activation_neon(t);
  return t;
}
#endif

}  // namespace

const kernels::KernelTable& kernel_table(cpu::Tier tier) {
  if (!cpu::tier_supported(tier)) {
    throw EngineError(ErrorCode::Unsupported, std::string("kernel tier \"") + cpu::tier_name(tier) +
                                                  "\" cannot run on this CPU; choose a tier from supported_tiers()");
  }
  static const kernels::KernelTable scalar = scalar_table();
  switch (tier) {
    case cpu::Tier::Scalar: return scalar;
#if defined(__x86_64__) || defined(_M_X64)
    case cpu::Tier::Avx2: {
      static const kernels::KernelTable table = avx2_table();
      return table;
    }
    case cpu::Tier::Avx512: {
      static const kernels::KernelTable table = avx512_table("avx512", false);
      return table;
    }
    case cpu::Tier::Avx512Vnni: {
      // The float kernels are the AVX-512 ones; VNNI only changes the Q8_0 and Q4_0 matmuls.
      static const kernels::KernelTable table = avx512_table("avx512vnni", true);
      return table;
    }
#endif
#if defined(__aarch64__)
    case cpu::Tier::Neon: {
      static const kernels::KernelTable table = neon_table("neon", false);
      return table;
    }
    case cpu::Tier::NeonDot: {
      // The float kernels are the NEON ones; SDOT only changes the Q8_0 and Q4_0 matmuls.
      static const kernels::KernelTable table = neon_table("neondot", true);
      return table;
    }
#endif
    default:
      return scalar;
  }
}

}  // namespace geb
