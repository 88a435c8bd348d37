// Scalar reference rotary embedding on adjacent pairs.
#include "kernels.h"

namespace geb::kernels {
namespace {

void rope(float* x, int n_heads, int head_dim, int rope_dim, const float* cos2, const float* sin2) {
  for (int h = 0; h < n_heads; ++h) {
    float* d = x + static_cast<size_t>(h) * head_dim;
    for (int i = 0; i + 1 < rope_dim; i += 2) {
      const float a = d[i];
      const float b = d[i + 1];
      d[i] = a * cos2[i] - b * sin2[i];
      d[i + 1] = b * cos2[i + 1] + a * sin2[i + 1];
    }
  }
}

}  // namespace

void fill_rope_scalar(KernelTable& t) { t.rope = rope; }

}  // namespace geb::kernels
