// AVX-512 instantiation of the norm kernels; the body is in norm_body.h.
#include "simd_avx512.h"
#include "norm_body.h"

namespace geb::kernels {

void fill_norm_avx512(KernelTable& t) { fill_norm_simd<Avx512Ops>(t); }

}  // namespace geb::kernels
