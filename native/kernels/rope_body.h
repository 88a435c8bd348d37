// Rotary-embedding body shared by the SIMD tiers (layout in kernels.h, RopeFn). A vector holds
// W / 2 whole pairs, so each pair's partner is one lane away: y = x * cos + swap(x) * sin * sign.
#pragma once

#include "kernels.h"

namespace geb::kernels {
namespace {

template <typename Ops>
void rope_simd(float* x, int n_heads, int head_dim, int rope_dim, const float* cos2, const float* sin2) {
  using V = typename Ops::V;
  constexpr int W = Ops::W;
  const V signs = Ops::pair_signs();
  const int pair_dims = rope_dim & ~1;  // an odd last dim has no partner and does not rotate

  for (int h = 0; h < n_heads; ++h) {
    float* d = x + static_cast<size_t>(h) * head_dim;
    int i = 0;
    for (; i + W <= pair_dims; i += W) {
      const V v = Ops::load(d + i);
      const V cross = Ops::mul(Ops::swap_pairs(v), Ops::mul(Ops::load(sin2 + i), signs));
      Ops::store(d + i, Ops::fmadd(v, Ops::load(cos2 + i), cross));
    }
    if (i < pair_dims) {
      const int n = pair_dims - i;
      const V v = Ops::load_partial(d + i, n);
      const V cross = Ops::mul(Ops::swap_pairs(v), Ops::mul(Ops::load_partial(sin2 + i, n), signs));
      Ops::store_partial(d + i, Ops::fmadd(v, Ops::load_partial(cos2 + i, n), cross), n);
    }
  }
}

template <typename Ops>
void fill_rope_simd(KernelTable& t) { t.rope = rope_simd<Ops>; }

}  // namespace
}  // namespace geb::kernels
