// Scalar reference RMSNorm.
#include <cmath>

#include "kernels.h"

namespace geb::kernels {
namespace {

void rmsnorm(const float* x, const float* w, int n, float eps, float* y) {
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) sum += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
  for (int i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}

}  // namespace

void fill_norm_scalar(KernelTable& t) { t.rmsnorm = rmsnorm; }

}  // namespace geb::kernels
