// Thread pool implementation: publication of jobs, chunk claiming and the spin-yield-sleep wait.
#include "thread_pool.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace geb {
namespace {

// Busy-loop iterations before a waiting thread starts yielding, and yields before a worker
// sleeps. Jobs of one forward step follow each other within microseconds, so spinning workers
// pick them up without a system call. Between steps they soon sleep, so an idle engine costs no
// CPU and an oversubscribed machine does not lose a core to spinning.
constexpr int kSpinIterations = 4000;
constexpr int kYieldIterations = 200;

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
  uint64_t state = claim_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(state >> 32) != generation) return;  // a newer job has started
    const int64_t n_items = job.n_items.load(std::memory_order_relaxed);
    const int64_t chunk = job.chunk.load(std::memory_order_relaxed);
    const int64_t begin = static_cast<int64_t>(state & 0xffffffffu);
    if (begin >= n_items) return;
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

void ThreadPool::run(CallFn call, void* ctx, int64_t n_items, int64_t chunk) {
  if (n_items <= 0) return;
  if (workers_.empty() || n_items <= chunk || n_items >= kMaxItems) {
    call(ctx, 0, n_items, 0);
    return;
  }

  // publish the job in the slot of the next generation
  const uint32_t generation = generation_.load(std::memory_order_relaxed) + 1;
  Job& job = jobs_[generation & 1u];
  job.call.store(call, std::memory_order_relaxed);
  job.ctx.store(ctx, std::memory_order_relaxed);
  job.n_items.store(n_items, std::memory_order_relaxed);
  job.chunk.store(chunk, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  claim_.store(static_cast<uint64_t>(generation) << 32, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.store(generation, std::memory_order_release);
  }
  wake_.notify_all();

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
        wake_.wait(lock, [&] {
          return generation_.load(std::memory_order_acquire) != seen || stop_.load(std::memory_order_acquire);
        });
      }
      ++spins;
    }
    seen = generation;
    work_on(generation, thread);
  }
}

}  // namespace geb
