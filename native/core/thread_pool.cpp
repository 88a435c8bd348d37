// Thread pool implementation: publication of jobs, chunk claiming and the spin-yield-sleep wait.
#include "thread_pool.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace geb {
namespace {

// Busy-loop iterations before a waiting thread starts yielding, and yields before a worker
// sleeps. Jobs of one forward step follow each other within microseconds, so spinning workers
// pick them up without a system call. 1000 pauses took about 25 us on the AMD EPYC Zen 3 VM we
// measured. After that a worker yields between checks, so between two steps the main thread,
// which runs then, gets the core at once instead of waiting for the spin to end. Workers then
// sleep, so an idle engine costs no CPU and an oversubscribed machine does not lose a core to
// spinning.
constexpr int kSpinIterations = 1000;
constexpr int kYieldIterations = 200;

// Sleeping workers are woken only for a job of at least this many min_chunk pieces. By our
// estimate a smaller job finishes in about the time a futex wake-up takes to reach a sleeping
// thread, so the caller runs it alone unless a worker is still polling and claims part of it.
constexpr int64_t kWakeMinChunks = 8;

// Largest job the 32-bit item counter can split; larger ones run on the calling thread.
constexpr int64_t kMaxItems = int64_t{1} << 31;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  try {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_main(i); });
  } catch (...) {
    // Thread creation throws std::system_error when the system runs out of threads or address
    // space. The destructor does not run for a half-built pool, and destroying a joinable
    // std::thread ends the process, so the started workers are stopped and joined here.
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_.store(true, std::memory_order_release);
    }
    wake_.notify_all();
    for (std::thread& worker : workers_) worker.join();
    throw;
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true, std::memory_order_release);
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::work_on(uint32_t generation, int thread) {
  const Job& job = jobs_[generation & 1u];
  const int64_t share = 2 * static_cast<int64_t>(n_threads_);
  uint64_t state = claim_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(state >> 32) != generation) return;  // a newer job has started
    const int64_t n_items = job.n_items.load(std::memory_order_relaxed);
    const int64_t min_chunk = job.min_chunk.load(std::memory_order_relaxed);
    const int64_t begin = static_cast<int64_t>(state & 0xffffffffu);
    if (begin >= n_items) return;
    // guided: a share of what is left, so chunks shrink toward the end of the range. Chunks are
    // whole multiples of min_chunk, so callers can align chunk boundaries through it.
    const int64_t guided = (n_items - begin) / share / min_chunk * min_chunk;
    const int64_t chunk = guided > min_chunk ? guided : min_chunk;
    const int64_t end = begin + chunk < n_items ? begin + chunk : n_items;
    const uint64_t next = (state & ~uint64_t{0xffffffffu}) | static_cast<uint64_t>(end);
    if (!claim_.compare_exchange_weak(state, next, std::memory_order_acquire, std::memory_order_acquire)) {
      continue;  // `state` now holds the current value
    }

    // The claim succeeded while `generation` was current, and the caller does not publish another
    // job before this chunk is counted in done_, so the job's fields are still the ones read above.
    job.call.load(std::memory_order_relaxed)(job.ctx.load(std::memory_order_relaxed), begin, end, thread);
    done_.fetch_add(end - begin, std::memory_order_release);
    state = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::run(CallFn call, void* ctx, int64_t n_items, int64_t min_chunk) {
  if (n_items <= 0) return;
  if (workers_.empty() || n_items <= min_chunk || n_items >= kMaxItems) {
    call(ctx, 0, n_items, 0);
    return;
  }

  // publish the job in the slot of the next generation
  const uint32_t generation = generation_.load(std::memory_order_relaxed) + 1;
  Job& job = jobs_[generation & 1u];
  job.call.store(call, std::memory_order_relaxed);
  job.ctx.store(ctx, std::memory_order_relaxed);
  job.n_items.store(n_items, std::memory_order_relaxed);
  job.min_chunk.store(min_chunk, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  claim_.store(static_cast<uint64_t>(generation) << 32, std::memory_order_release);
  generation_.store(generation, std::memory_order_seq_cst);
  // Spinning workers see the new generation by themselves. A sleeping one is woken under the
  // mutex, which it holds from its check of generation_ until it blocks, so the wake-up is not lost.
  if (n_items >= kWakeMinChunks * min_chunk && sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mutex_); }
    wake_.notify_all();
  }

  // take part, then wait for the chunks other threads claimed
  work_on(generation, 0);
  int spins = 0;
  while (done_.load(std::memory_order_acquire) != n_items) {
    if (spins < kSpinIterations) {
      cpu_relax();
      ++spins;
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::worker_main(int thread) {
  uint32_t seen = 0;
  for (;;) {
    // wait for the next generation: spin, then yield, then sleep
    int spins = 0;
    uint32_t generation;
    while ((generation = generation_.load(std::memory_order_acquire)) == seen) {
      if (stop_.load(std::memory_order_acquire)) return;
      if (spins < kSpinIterations) {
        cpu_relax();
      } else if (spins < kSpinIterations + kYieldIterations) {
        std::this_thread::yield();
      } else {
        std::unique_lock<std::mutex> lock(mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] {
          return generation_.load(std::memory_order_seq_cst) != seen || stop_.load(std::memory_order_acquire);
        });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      ++spins;
    }
    seen = generation;
    work_on(generation, thread);
  }
}

}  // namespace geb
