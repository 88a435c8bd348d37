// Plain NEON instantiation of the Q4_0 matmul (widening int8 multiplies, so it runs on any
// Armv8-A core); the body is in matmul_quant_body.h.
#include "quant_ops_neon.h"
#include "matmul_quant_body.h"

namespace geb::kernels {

void fill_matmul_q4_0_neon(KernelTable& t) {
  t.matmul[static_cast<int>(WeightType::Q4_0)] = matmul_quant<QuantNeonOps, Q4_0Format>;
  t.prepare[static_cast<int>(WeightType::Q4_0)] = prepare_q8_activations;
}

}  // namespace geb::kernels
