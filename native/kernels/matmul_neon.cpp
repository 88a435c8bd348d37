// NEON instantiation of the matmul kernels; the body is in matmul_body.h.
#include "simd_neon.h"
#include "matmul_body.h"

namespace geb::kernels {

void fill_matmul_neon(KernelTable& t) { fill_matmul_simd<NeonOps>(t); }

}  // namespace geb::kernels
