// AVX-512 instantiation of the activation kernels; the body is in activation_body.h.
#include "simd_avx512.h"
#include "activation_body.h"

namespace geb::kernels {

void fill_activation_avx512(KernelTable& t) { fill_activation_simd<Avx512Ops>(t); }

}  // namespace geb::kernels
