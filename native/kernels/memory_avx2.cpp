// AVX2 read loop of the memory bandwidth probe (kernels.h, ReadSumFn): 256-bit aligned loads,
// the kind the matmul kernels stream weights with, into four independent integer sums. Each
// iteration reads 256 bytes, four cache lines.
#include <immintrin.h>

#include "kernels.h"

namespace geb::kernels {
namespace {

uint64_t read_sum_avx2(const void* p, size_t bytes) {
  const auto* v = static_cast<const __m256i*>(p);
  __m256i s0 = _mm256_setzero_si256();
  __m256i s1 = _mm256_setzero_si256();
  __m256i s2 = _mm256_setzero_si256();
  __m256i s3 = _mm256_setzero_si256();
  const size_t n = bytes / sizeof(__m256i);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    s0 = _mm256_add_epi64(s0, _mm256_xor_si256(_mm256_load_si256(v + i), _mm256_load_si256(v + i + 1)));
    s1 = _mm256_add_epi64(s1, _mm256_xor_si256(_mm256_load_si256(v + i + 2), _mm256_load_si256(v + i + 3)));
    s2 = _mm256_add_epi64(s2, _mm256_xor_si256(_mm256_load_si256(v + i + 4), _mm256_load_si256(v + i + 5)));
    s3 = _mm256_add_epi64(s3, _mm256_xor_si256(_mm256_load_si256(v + i + 6), _mm256_load_si256(v + i + 7)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
  const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  return static_cast<uint64_t>(_mm_cvtsi128_si64(h)) + static_cast<uint64_t>(_mm_extract_epi64(h, 1));
}

}  // namespace

void fill_memory_avx2(KernelTable& t) { t.read_sum = read_sum_avx2; }

}  // namespace geb::kernels
