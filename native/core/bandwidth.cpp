// Memory read bandwidth probe; see bandwidth.h.
#include "bandwidth.h"

#include <sys/mman.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "error.h"
#include "thread_pool.h"

namespace geb {
namespace {

constexpr size_t kPiece = size_t{1} << 20;

// An anonymous mapping, unmapped on scope exit.
struct Mapping {
  void* p;
  size_t bytes;
  Mapping(void* mapped, size_t length) : p(mapped), bytes(length) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { ::munmap(p, bytes); }
};

}  // namespace

BandwidthResult measure_read_bandwidth(const kernels::KernelTable& table, size_t bytes, int threads, int passes) {
  if (bytes < kPiece || bytes > (size_t{1} << 40)) {
    throw EngineError(ErrorCode::InvalidArgument, "the probe needs between 1 MiB and 1 TiB, got " + std::to_string(bytes) +
                                                      " bytes; pass a size several times the last-level cache, such as 512 MiB");
  }
  if (threads < 1) throw EngineError(ErrorCode::InvalidArgument, "threads must be at least 1, got " + std::to_string(threads));
  if (passes < 1) throw EngineError(ErrorCode::InvalidArgument, "passes must be at least 1, got " + std::to_string(passes));

  const int64_t n_pieces = static_cast<int64_t>((bytes + kPiece - 1) / kPiece);
  const size_t total = static_cast<size_t>(n_pieces) * kPiece;
  void* mapped = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) throw std::bad_alloc();
  Mapping buffer{mapped, total};
#ifdef MADV_HUGEPAGE
  // Ask for 2 MiB pages. The page cache maps parts of a model file in 2 MiB pages too (on our
  // Linux 6.18 VM, FilePmdMapped in /proc/self/smaps), and F32 decode reads the mapped file. With
  // 4 KiB pages, one thread of the probe read about 15% less on a Zen 3 VM. If the OS refuses
  // (THP "never"), the probe reads 4 KiB pages and reports their lower bandwidth.
  ::madvise(mapped, total, MADV_HUGEPAGE);
#endif
  auto* base = static_cast<unsigned char*>(mapped);

  ThreadPool pool(threads);
  const int64_t chunk = pool.chunk_for(n_pieces, 1);
  // first touch from the pool, so each page is backed before timing starts (and, on NUMA
  // machines, lands near a thread that reads it)
  pool.parallel_for(n_pieces, chunk, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) std::memset(base + static_cast<size_t>(i) * kPiece, static_cast<int>(i & 0xff), kPiece);
  });

  // one sum slot per thread, a cache line apart, keeps the reads observable
  std::unique_ptr<uint64_t[]> sums(new uint64_t[static_cast<size_t>(threads) * 8]());
  double best = 0.0;
  for (int p = 0; p < passes; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(n_pieces, chunk, [&](int64_t begin, int64_t end, int thread) {
      uint64_t s = 0;
      for (int64_t i = begin; i < end; ++i) s += table.read_sum(base + static_cast<size_t>(i) * kPiece, kPiece);
      sums[static_cast<size_t>(thread) * 8] += s;
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (p == 0 || seconds < best) best = seconds;
  }
  volatile uint64_t sink = 0;
  for (int t = 0; t < threads; ++t) sink = sink + sums[static_cast<size_t>(t) * 8];
  (void)sink;
  return {static_cast<double>(total) / best, best, pool.size()};
}

}  // namespace geb
