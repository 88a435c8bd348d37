// Scalar reference attention: for each query head, a first pass finds the maximum score and a
// second pass accumulates exp(score - max) * v. Scores are recomputed rather than stored, so the
// reference needs no buffer that grows with the number of keys.
#include <cmath>
#include <cstring>

#include "kernels.h"
#include "numeric.h"

namespace geb::kernels {
namespace {

inline float load_kv(const float* p, size_t i) { return p[i]; }
inline float load_kv(const uint16_t* p, size_t i) { return half_to_float(p[i]); }

template <typename T>
void attention(const float* q, int q_stride, int n_group, int head_dim, const void* k_void,
               const void* v_void, int n_keys, float scale, float* out, int out_stride,
               float* scratch) {
  const T* k = static_cast<const T*>(k_void);
  const T* v = static_cast<const T*>(v_void);
  float* acc = scratch;  // (head_dim)

  for (int g = 0; g < n_group; ++g) {
    const float* qg = q + static_cast<size_t>(g) * q_stride;
    auto score = [&](int j) {
      float dot = 0.0f;
      for (int i = 0; i < head_dim; ++i) dot += qg[i] * load_kv(k, static_cast<size_t>(j) * head_dim + i);
      return dot * scale;
    };

    float max = -INFINITY;
    for (int j = 0; j < n_keys; ++j) max = std::fmax(max, score(j));

    for (int i = 0; i < head_dim; ++i) acc[i] = 0.0f;
    float sum = 0.0f;
    for (int j = 0; j < n_keys; ++j) {
      const float p = std::exp(score(j) - max);
      sum += p;
      for (int i = 0; i < head_dim; ++i) acc[i] += p * load_kv(v, static_cast<size_t>(j) * head_dim + i);
    }

    float* og = out + static_cast<size_t>(g) * out_stride;
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int i = 0; i < head_dim; ++i) og[i] = acc[i] * inv;
  }
}

}  // namespace

void fill_attention_scalar(KernelTable& t) {
  t.attention_f32kv = attention<float>;
  t.attention_f16kv = attention<uint16_t>;
}

}  // namespace geb::kernels
