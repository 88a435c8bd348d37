// NEON instantiation of the attention kernels; the body is in attention_body.h.
#include "simd_neon.h"
#include "attention_body.h"

namespace geb::kernels {

void fill_attention_neon(KernelTable& t) { fill_attention_simd<NeonOps>(t); }

}  // namespace geb::kernels
