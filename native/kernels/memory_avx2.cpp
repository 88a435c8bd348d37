// AVX2 read loop of the memory bandwidth probe (kernels.h, ReadSumFn). It uses 256-bit aligned
// loads, the kind the matmul kernels stream weights with. The range is read as four quarters side
// by side, two cache lines of each per step, the way a decode thread walks four groups of repacked
// weights at once (quant_x8_avx2.h). With a single stream per core the probe read less than the
// engine's decode did, so it was no upper bound.
#include <immintrin.h>

#include "kernels.h"

namespace geb::kernels {
namespace {

constexpr int kStreams = 4;

// Returns sum + (a xor b), where a and b are the two 256-bit loads at v.
inline __m256i add_pair(__m256i sum, const __m256i* v) {
  return _mm256_add_epi64(sum, _mm256_xor_si256(_mm256_load_si256(v), _mm256_load_si256(v + 1)));
}

uint64_t read_sum_avx2(const void* p, size_t bytes) {
  const auto* v = static_cast<const __m256i*>(p);
  // bytes is a multiple of 256, so each quarter is whole 64-byte lines.
  const size_t quarter = bytes / kStreams / sizeof(__m256i);
  __m256i s[kStreams];
  for (int i = 0; i < kStreams; ++i) s[i] = _mm256_setzero_si256();
  for (size_t i = 0; i + 4 <= quarter; i += 4) {
    for (int j = 0; j < kStreams; ++j) {
      s[j] = add_pair(s[j], v + j * quarter + i);
      s[j] = add_pair(s[j], v + j * quarter + i + 2);
    }
  }
  // A quarter that is an odd number of lines leaves one line per stream.
  if (quarter % 4 != 0) {
    for (int j = 0; j < kStreams; ++j) s[j] = add_pair(s[j], v + j * quarter + quarter - 2);
  }
  const __m256i t = _mm256_add_epi64(_mm256_add_epi64(s[0], s[1]), _mm256_add_epi64(s[2], s[3]));
  const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
  return static_cast<uint64_t>(_mm_cvtsi128_si64(h)) + static_cast<uint64_t>(_mm_extract_epi64(h, 1));
}

}  // namespace

void fill_memory_avx2(KernelTable& t) { t.read_sum = read_sum_avx2; }

}  // namespace geb::kernels
