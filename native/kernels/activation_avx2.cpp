// AVX2 instantiation of the activation kernels; the body is in activation_body.h.
#include "simd_avx2.h"
#include "activation_body.h"

namespace geb::kernels {

void fill_activation_avx2(KernelTable& t) { fill_activation_simd<Avx2Ops>(t); }

}  // namespace geb::kernels
