// AVX2 instantiation of the rope kernels; the body is in rope_body.h.
#include "simd_avx2.h"
#include "rope_body.h"

namespace geb::kernels {

void fill_rope_avx2(KernelTable& t) { fill_rope_simd<Avx2Ops>(t); }

}  // namespace geb::kernels
