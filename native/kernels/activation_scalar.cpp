// Scalar reference SwiGLU and softmax.
#include <cmath>

#include "kernels.h"

namespace geb::kernels {
namespace {

void swiglu(const float* a, const float* b, int n, float* y) {
  for (int i = 0; i < n; ++i) y[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

void softmax(float* x, int n) {
  if (n <= 0) return;
  float max = x[0];
  for (int i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace

void fill_activation_scalar(KernelTable& t) {
  t.swiglu = swiglu;
  t.softmax = softmax;
}

}  // namespace geb::kernels
