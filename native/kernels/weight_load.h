// Loaders that widen one vector of weights of each storage type to F32, for the SIMD bodies.
// `Ops` is one of the per-ISA operation sets (simd_avx2.h, simd_avx512.h).
#pragma once

#include <cstdint>
#include <cstring>

#include "numeric.h"

namespace geb::kernels {
namespace {

struct F32Weights {
  static constexpr size_t kBytes = 4;
  template <typename Ops>
  static typename Ops::V load(const uint8_t* p) { return Ops::load(reinterpret_cast<const float*>(p)); }
  static float scalar(const uint8_t* p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
};

struct F16Weights {
  static constexpr size_t kBytes = 2;
  template <typename Ops>
  static typename Ops::V load(const uint8_t* p) { return Ops::load_f16(p); }
  static float scalar(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return half_to_float(v);
  }
};

struct Bf16Weights {
  static constexpr size_t kBytes = 2;
  template <typename Ops>
  static typename Ops::V load(const uint8_t* p) { return Ops::load_bf16(p); }
  static float scalar(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return bf16_to_float(v);
  }
};

// The first n (< W) elements at p widened to F32, the other lanes zero.
template <typename Ops, typename WT>
typename Ops::V load_weights_partial(const uint8_t* p, int n) {
  float tmp[Ops::W] = {};
  for (int i = 0; i < n; ++i) tmp[i] = WT::scalar(p + static_cast<size_t>(i) * WT::kBytes);
  return Ops::load(tmp);
}

}  // namespace
}  // namespace geb::kernels
