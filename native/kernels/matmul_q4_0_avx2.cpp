// AVX2 Q4_0 matmuls: the GGUF-layout one instantiated from matmul_quant_body.h, and the one over
// weights repacked in groups of 8 rows (Q4_0x8) from quant_x8_avx2.h.
#include "quant_ops_avx2.h"
#include "matmul_quant_body.h"
#include "quant_x8_avx2.h"

namespace geb::kernels {

void fill_matmul_q4_0_avx2(KernelTable& t) {
  t.matmul[static_cast<int>(WeightType::Q4_0)] = matmul_quant<QuantAvx2Ops, Q4_0Format>;
  t.prepare[static_cast<int>(WeightType::Q4_0)] = prepare_q8_activations_avx2;
  t.matmul_x8[static_cast<int>(WeightType::Q4_0)] = matmul_x8<Q4_0x8Avx2>;
}

}  // namespace geb::kernels
