// Memory read bandwidth probe for benchmarks. It reads a buffer far larger than the caches with a
// tier's read loop, split over a ThreadPool (the engine's pool class) the way a decode step
// streams its weights. bench/bandwidth.mjs compares decode speed against it (the roofline).
#pragma once

#include <cstddef>

#include "kernels/kernels.h"

namespace geb {

struct BandwidthResult {
  double bytes_per_second;  // best pass: bytes / its wall time
  double best_seconds;      // wall time of that pass
  int threads;              // threads of the pool that read
};

// Maps `bytes`, rounded up to whole 1 MiB pieces, in 2 MiB pages where the OS allows them. Touches
// every page from the pool, then reads the buffer `passes` times with `threads` threads claiming
// 1 MiB pieces. The tier's read loop reads each piece in several streams at once. Throws EngineError
// (InvalidArgument) on bad sizes and std::bad_alloc when the buffer does not fit.
BandwidthResult measure_read_bandwidth(const kernels::KernelTable& table, size_t bytes, int threads, int passes);

}  // namespace geb
