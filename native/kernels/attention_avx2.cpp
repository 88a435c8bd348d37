// AVX2 instantiation of the attention kernels; the body is in attention_body.h.
#include "simd_avx2.h"
#include "attention_body.h"

namespace geb::kernels {

void fill_attention_avx2(KernelTable& t) { fill_attention_simd<Avx2Ops>(t); }

}  // namespace geb::kernels
