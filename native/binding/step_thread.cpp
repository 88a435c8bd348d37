// SPDX-License-Identifier: MIT
// StepThread: hand-off of one job at a time, and the poll-yield-sleep wait between jobs.
#include "step_thread.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace geb::binding {
namespace {

// Polling before the thread yields, then yields before it sleeps. The main thread takes its turn
// between two decode steps (settle the promise, sample, post the next step) right when this
// thread starts to wait, and on a 2-core machine the pool's worker may hold the other core. So
// the thread spins only about 2.5 us (one pause took about 25 ns on the AMD EPYC Zen 3 VM we
// measured). Then it checks between sched_yield calls, which hand the core to the main thread
// at once when that thread is runnable. A yield with nothing else to run returned within about
// a microsecond there, so the yields cover roughly 100 us before the thread sleeps.
// NOTE: the polling keeps a core busy for up to about 100 us after every step, also for an engine
// created with threads: 1, which a caller may expect to use one core only.
constexpr int kPollIterations = 100;
constexpr int kYieldIterations = 100;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

StepThread::StepThread(RunFn run) : run_(run), thread_([this] { main(); }) {}

StepThread::~StepThread() { stop(); }

void StepThread::post(void* job) {
  pending_.store(job, std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_seq_cst)) {
    { std::lock_guard<std::mutex> lock(mutex_); }
    wake_.notify_one();
  }
}

void StepThread::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true, std::memory_order_seq_cst);
  }
  wake_.notify_one();
  thread_.join();
}

void* StepThread::wait_for_job() {
  for (int i = 0; i < kPollIterations + kYieldIterations; ++i) {
    if (void* job = pending_.exchange(nullptr, std::memory_order_acquire)) return job;
    if (stop_.load(std::memory_order_acquire)) return nullptr;
    if (i < kPollIterations) cpu_relax();
    else std::this_thread::yield();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  sleeping_.store(true, std::memory_order_seq_cst);
  wake_.wait(lock, [&] {
    return pending_.load(std::memory_order_seq_cst) != nullptr || stop_.load(std::memory_order_seq_cst);
  });
  sleeping_.store(false, std::memory_order_relaxed);
  // a job posted before stop() still runs, so its promise settles
  return pending_.exchange(nullptr, std::memory_order_acquire);
}

void StepThread::main() {
  while (void* job = wait_for_job()) run_(job);
}

}  // namespace geb::binding
