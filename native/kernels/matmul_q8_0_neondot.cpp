// NEON dot-product (SDOT) instantiation of the Q8_0 matmul; the body is in matmul_quant_body.h.
// Compiled with +dotprod, so quant_ops_neon.h selects SDOT; the check below catches a build
// file that lacks the flag and would otherwise fall back to the widening path unnoticed.
#include "quant_ops_neon.h"
#include "matmul_quant_body.h"

#if !defined(__ARM_FEATURE_DOTPROD)
#error "matmul_*_neondot.cpp must be compiled with the dot-product extension (-march=armv8.2-a+dotprod)"
#endif

namespace geb::kernels {

void fill_matmul_q8_0_neondot(KernelTable& t) {
  t.matmul[static_cast<int>(WeightType::Q8_0)] = matmul_quant<QuantNeonOps, Q8_0Format>;
  t.prepare[static_cast<int>(WeightType::Q8_0)] = prepare_q8_activations;
}

}  // namespace geb::kernels
