// AVX-512 instantiation of the matmul kernels; the body is in matmul_body.h.
#include "simd_avx512.h"
#include "matmul_body.h"

namespace geb::kernels {

void fill_matmul_avx512(KernelTable& t) { fill_matmul_simd<Avx512Ops>(t); }

}  // namespace geb::kernels
