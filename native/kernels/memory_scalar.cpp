// Portable read loop of the memory bandwidth probe (kernels.h, ReadSumFn). Eight independent
// 64-bit sums keep several cache lines in flight; the compiler may vectorize it for the baseline ISA.
#include "kernels.h"

#include <cstring>

namespace geb::kernels {
namespace {

uint64_t read_sum_scalar(const void* p, size_t bytes) {
  const auto* bytes_in = static_cast<const unsigned char*>(p);
  uint64_t s[8] = {};
  for (size_t i = 0; i + 64 <= bytes; i += 64) {
    uint64_t w[8];
    std::memcpy(w, bytes_in + i, sizeof w);
    for (int j = 0; j < 8; ++j) s[j] += w[j];
  }
  uint64_t sum = 0;
  for (uint64_t v : s) sum ^= v;
  return sum;
}

}  // namespace

void fill_memory_scalar(KernelTable& t) { t.read_sum = read_sum_scalar; }

}  // namespace geb::kernels
