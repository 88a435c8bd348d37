// Persistent worker threads for the forward pass. One pool per engine; the thread that calls
// parallel_for takes part as thread 0, so a pool of `n` threads starts n - 1 workers.
//
// Work is a range of items [0, n_items) claimed in chunks through an atomic counter, so faster
// threads take more chunks. Chunks shrink as the range runs out (guided scheduling): the first
// claims are large, which keeps claims few, and the last ones are small, so threads finish
// together. The caller waits only for chunks that were claimed, never for a worker that has not
// woken up yet, so a descheduled worker delays nothing when the machine is oversubscribed.
// Between jobs the workers spin briefly, then yield, then sleep on a condition variable, so an
// idle engine costs no CPU. The caller takes the mutex to wake workers only when one sleeps, and
// only for a job large enough to repay the wake-up; polling workers join any job.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace geb {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(begin, end, thread_index) over [0, n_items) and returns when every chunk is done.
  // Each claimed chunk is a whole multiple of `min_chunk` items, except the last one of the range,
  // so every chunk boundary is a multiple of min_chunk. A range of at most `min_chunk` items runs
  // on the calling thread without waking any worker, so callers choose min_chunk as the smallest
  // piece worth handing to another thread.
  // thread_index is in [0, size()). Not reentrant: one caller at a time.
  template <typename F>
  void parallel_for(int64_t n_items, int64_t min_chunk, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    auto call = [](void* ctx, int64_t begin, int64_t end, int thread) { (*static_cast<Fn*>(ctx))(begin, end, thread); };
    run(call, const_cast<void*>(static_cast<const void*>(&fn)), n_items, min_chunk < 1 ? 1 : min_chunk);
  }

  // Chunk size that gives each thread about four chunks of a range of n_items, at least
  // min_chunk items each. With guided claiming this is only a lower bound on each chunk.
  int64_t chunk_for(int64_t n_items, int64_t min_chunk) const {
    const int64_t chunk = n_items / (static_cast<int64_t>(n_threads_) * 4);
    return chunk < min_chunk ? min_chunk : chunk;
  }

 private:
  using CallFn = void (*)(void* ctx, int64_t begin, int64_t end, int thread);

  // One job. Jobs alternate between two slots by generation parity, so a worker that lags one
  // job behind reads a slot the caller is not rewriting. The fields are atomics, written relaxed
  // by the caller before its release store to claim_, and read relaxed by threads that acquired
  // claim_ with the job's generation.
  struct Job {
    std::atomic<CallFn> call{nullptr};
    std::atomic<void*> ctx{nullptr};
    std::atomic<int64_t> n_items{0};
    std::atomic<int64_t> min_chunk{1};
  };

  void run(CallFn call, void* ctx, int64_t n_items, int64_t min_chunk);
  // Claims and runs chunks of job `generation` until none are left or a newer job started.
  void work_on(uint32_t generation, int thread);
  void worker_main(int thread);

  int n_threads_;
  Job jobs_[2];

  // (generation << 32) | next unclaimed item. The caller stores it with release when it
  // publishes a job. Every thread claims with a compare-exchange (acquire on success), which fails
  // once a newer job has replaced the generation, so a late thread never claims a stale chunk.
  alignas(64) std::atomic<uint64_t> claim_{0};
  // Items finished in the current job. Each thread adds its chunk's size with release after the
  // chunk's writes. The caller resets it (relaxed, before publishing) and waits with acquire until
  // it reaches n_items, which makes every output write visible to the caller.
  alignas(64) std::atomic<int64_t> done_{0};
  // Generation of the newest job. The caller increments it (seq_cst), then reads sleepers_
  // (seq_cst). A worker increments sleepers_ under mutex_ before it checks generation_ and waits,
  // so either the caller sees the sleeper and notifies under mutex_, or the worker sees the job.
  alignas(64) std::atomic<uint32_t> generation_{0};
  // Workers blocked (or about to block) on wake_.
  std::atomic<int> sleepers_{0};
  // Set once by the destructor (release, under mutex_). Workers read it with acquire.
  alignas(64) std::atomic<bool> stop_{false};

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
};

}  // namespace geb
