// AVX2 instantiation of the norm kernels; the body is in norm_body.h.
#include "simd_avx2.h"
#include "norm_body.h"

namespace geb::kernels {

void fill_norm_avx2(KernelTable& t) { fill_norm_simd<Avx2Ops>(t); }

}  // namespace geb::kernels
