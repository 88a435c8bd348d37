// SwiGLU and softmax bodies shared by the SIMD tiers (layouts in kernels.h).
#pragma once

#include "kernels.h"

namespace geb::kernels {
namespace {

template <typename Ops>
typename Ops::V silu_times(typename Ops::V a, typename Ops::V b) {
  const typename Ops::V one = Ops::set1(1.0f);
  const typename Ops::V e = Ops::exp(Ops::sub(Ops::zero(), a));
  return Ops::mul(Ops::div(a, Ops::add(one, e)), b);
}

template <typename Ops>
void swiglu_simd(const float* a, const float* b, int n, float* y) {
  constexpr int W = Ops::W;
  int i = 0;
  for (; i + W <= n; i += W) Ops::store(y + i, silu_times<Ops>(Ops::load(a + i), Ops::load(b + i)));
  if (i < n) {
    const int m = n - i;
    Ops::store_partial(y + i, silu_times<Ops>(Ops::load_partial(a + i, m), Ops::load_partial(b + i, m)), m);
  }
}

template <typename Ops>
void softmax_simd(float* x, int n) {
  using V = typename Ops::V;
  constexpr int W = Ops::W;
  if (n <= 0) return;

  float max = x[0];
  int i = 0;
  if (n >= W) {
    V vmax = Ops::load(x);
    for (i = W; i + W <= n; i += W) vmax = Ops::max(vmax, Ops::load(x + i));
    max = Ops::hmax(vmax);
  }
  for (; i < n; ++i) max = x[i] > max ? x[i] : max;

  const V vmax = Ops::set1(max);
  V vsum = Ops::zero();
  i = 0;
  for (; i + W <= n; i += W) {
    const V e = Ops::exp(Ops::sub(Ops::load(x + i), vmax));
    Ops::store(x + i, e);
    vsum = Ops::add(vsum, e);
  }
  if (i < n) {
    const int m = n - i;
    // the lanes past n are zero after the partial load, so mask their exp out of the sum
    float tmp[W] = {};
    Ops::store_partial(tmp, Ops::exp(Ops::sub(Ops::load_partial(x + i, m), vmax)), m);
    Ops::store_partial(x + i, Ops::load(tmp), m);
    vsum = Ops::add(vsum, Ops::load(tmp));
  }

  const V inv = Ops::set1(1.0f / Ops::hsum(vsum));
  i = 0;
  for (; i + W <= n; i += W) Ops::store(x + i, Ops::mul(Ops::load(x + i), inv));
  if (i < n) Ops::store_partial(x + i, Ops::mul(Ops::load_partial(x + i, n - i), inv), n - i);
}

template <typename Ops>
void fill_activation_simd(KernelTable& t) {
  t.swiglu = swiglu_simd<Ops>;
  t.softmax = softmax_simd<Ops>;
}

}  // namespace
}  // namespace geb::kernels
