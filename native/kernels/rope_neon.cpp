// NEON instantiation of the rope kernels; the body is in rope_body.h.
#include "simd_neon.h"
#include "rope_body.h"

namespace geb::kernels {

void fill_rope_neon(KernelTable& t) { fill_rope_simd<NeonOps>(t); }

}  // namespace geb::kernels
