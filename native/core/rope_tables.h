// RoPE frequencies and per-position rotation tables, shared by the forward pass, the context
// shift and the JS `kernels.rope` export so all three rotate identically.
#pragma once

#include <cmath>
#include <vector>

namespace geb {

// theta_i = base^(-2i / rope_dim) for i < rope_dim / 2, computed in double and rounded to F32.
inline std::vector<float> rope_theta(float base, int rope_dim) {
  std::vector<float> theta(static_cast<size_t>(rope_dim / 2));
  for (int i = 0; i < rope_dim / 2; ++i) {
    theta[static_cast<size_t>(i)] =
        static_cast<float>(std::pow(static_cast<double>(base), -2.0 * i / static_cast<double>(rope_dim)));
  }
  return theta;
}

// Fills cos2/sin2 (rope_dim entries, each pair's value twice, as RopeFn expects) for a position.
// The angle is the F32 product float(pos) * theta_i, as in the PyTorch reference outputs of the
// test models. Only cos and sin are evaluated in double. pos may be negative (context shift).
inline void fill_rope_tables(const std::vector<float>& theta, int pos, float* cos2, float* sin2) {
  for (size_t i = 0; i < theta.size(); ++i) {
    const float angle = static_cast<float>(pos) * theta[i];
    const float c = static_cast<float>(std::cos(static_cast<double>(angle)));
    const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
    cos2[2 * i] = cos2[2 * i + 1] = c;
    sin2[2 * i] = sin2[2 * i + 1] = s;
  }
}

}  // namespace geb
