// NEON instantiation of the activation kernels; the body is in activation_body.h.
#include "simd_neon.h"
#include "activation_body.h"

namespace geb::kernels {

void fill_activation_neon(KernelTable& t) { fill_activation_simd<NeonOps>(t); }

}  // namespace geb::kernels
