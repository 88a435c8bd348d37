// RMSNorm body shared by the SIMD tiers (layout in kernels.h, RmsnormFn).
#pragma once

#include "kernels.h"

namespace geb::kernels {
namespace {

template <typename Ops>
void rmsnorm_simd(const float* x, const float* w, int n, float eps, float* y) {
  using V = typename Ops::V;
  constexpr int W = Ops::W;
  V acc0 = Ops::zero(), acc1 = Ops::zero();
  int i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const V a = Ops::load(x + i);
    const V b = Ops::load(x + i + W);
    acc0 = Ops::fmadd(a, a, acc0);
    acc1 = Ops::fmadd(b, b, acc1);
  }
  for (; i + W <= n; i += W) {
    const V a = Ops::load(x + i);
    acc0 = Ops::fmadd(a, a, acc0);
  }
  if (i < n) {
    const V a = Ops::load_partial(x + i, n - i);
    acc1 = Ops::fmadd(a, a, acc1);
  }
  const float sum = Ops::hsum(Ops::add(acc0, acc1));
  const float scale = 1.0f / __builtin_sqrtf(sum / static_cast<float>(n) + eps);

  const V vscale = Ops::set1(scale);
  i = 0;
  for (; i + W <= n; i += W) Ops::store(y + i, Ops::mul(Ops::mul(Ops::load(x + i), vscale), Ops::load(w + i)));
  if (i < n) {
    const int m = n - i;
    Ops::store_partial(y + i, Ops::mul(Ops::mul(Ops::load_partial(x + i, m), vscale), Ops::load_partial(w + i, m)), m);
  }
}

template <typename Ops>
void fill_norm_simd(KernelTable& t) { t.rmsnorm = rmsnorm_simd<Ops>; }

}  // namespace
}  // namespace geb::kernels
