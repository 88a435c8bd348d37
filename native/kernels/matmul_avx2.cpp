// AVX2 instantiation of the matmul kernels; the body is in matmul_body.h.
#include "simd_avx2.h"
#include "matmul_body.h"

namespace geb::kernels {

void fill_matmul_avx2(KernelTable& t) { fill_matmul_simd<Avx2Ops>(t); }

}  // namespace geb::kernels
