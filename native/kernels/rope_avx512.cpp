// AVX-512 instantiation of the rope kernels; the body is in rope_body.h.
#include "simd_avx512.h"
#include "rope_body.h"

namespace geb::kernels {

void fill_rope_avx512(KernelTable& t) { fill_rope_simd<Avx512Ops>(t); }

}  // namespace geb::kernels
