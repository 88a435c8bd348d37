// NEON instantiation of the norm kernels; the body is in norm_body.h.
#include "simd_neon.h"
#include "norm_body.h"

namespace geb::kernels {

void fill_norm_neon(KernelTable& t) { fill_norm_simd<NeonOps>(t); }

}  // namespace geb::kernels
