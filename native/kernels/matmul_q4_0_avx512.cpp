// AVX-512 BW (no VNNI) instantiation of the Q4_0 matmul; the body is in matmul_quant_body.h.
#include "quant_ops_avx512.h"
#include "matmul_quant_body.h"

namespace geb::kernels {

void fill_matmul_q4_0_avx512(KernelTable& t) {
  t.matmul[static_cast<int>(WeightType::Q4_0)] = matmul_quant<QuantAvx512Ops<false>, Q4_0Format>;
  t.prepare[static_cast<int>(WeightType::Q4_0)] = prepare_q8_activations;
}

}  // namespace geb::kernels
