// AVX2 Q8_0 matmuls: the GGUF-layout one instantiated from matmul_quant_body.h, and the one over
// weights repacked in groups of 8 rows (Q8_0x8) from quant_x8_avx2.h. Also defines the AVX2
// activation quantization that the AVX2 Q4_0 matmuls share.
#include "quant_ops_avx2.h"
#include "matmul_quant_body.h"
#include "quant_prepare_avx2.h"
#include "quant_x8_avx2.h"

namespace geb::kernels {

void prepare_q8_activations_avx2(const float* x, int k, int n_tokens, void* out) {
  const size_t row_bytes = q8_activation_row_bytes(k);
  for (int t = 0; t < n_tokens; ++t) {
    prepare_q8_row_avx2(x + static_cast<size_t>(t) * k, k, static_cast<uint8_t*>(out) + static_cast<size_t>(t) * row_bytes);
  }
}

void fill_matmul_q8_0_avx2(KernelTable& t) {
  t.matmul[static_cast<int>(WeightType::Q8_0)] = matmul_quant<QuantAvx2Ops, Q8_0Format>;
  t.prepare[static_cast<int>(WeightType::Q8_0)] = prepare_q8_activations_avx2;
  t.matmul_x8[static_cast<int>(WeightType::Q8_0)] = matmul_x8<Q8_0x8Avx2>;
}

}  // namespace geb::kernels
