// Portable read loop of the memory bandwidth probe (kernels.h, ReadSumFn). Like the AVX2 loop, it
// reads the range as four quarters side by side, so several streams keep lines in flight. Eight
// independent 64-bit sums let the compiler vectorize it for the baseline ISA.
#include "kernels.h"

#include <cstring>

namespace geb::kernels {
namespace {

constexpr int kStreams = 4;

uint64_t read_sum_scalar(const void* p, size_t bytes) {
  const auto* bytes_in = static_cast<const unsigned char*>(p);
  // bytes is a multiple of 256, so each quarter is whole 64-byte lines.
  const size_t quarter = bytes / kStreams;
  uint64_t s[8] = {};
  for (size_t i = 0; i + 64 <= quarter; i += 64) {
    for (int j = 0; j < kStreams; ++j) {
      uint64_t w[8];
      std::memcpy(w, bytes_in + static_cast<size_t>(j) * quarter + i, sizeof w);
      for (int m = 0; m < 8; ++m) s[m] += w[m];
    }
  }
  uint64_t sum = 0;
  for (uint64_t v : s) sum ^= v;
  return sum;
}

}  // namespace

void fill_memory_scalar(KernelTable& t) { t.read_sum = read_sum_scalar; }

}  // namespace geb::kernels
