// AVX-512 instantiation of the attention kernels; the body is in attention_body.h.
#include "simd_avx512.h"
#include "attention_body.h"

namespace geb::kernels {

void fill_attention_avx512(KernelTable& t) { fill_attention_simd<Avx512Ops>(t); }

}  // namespace geb::kernels
