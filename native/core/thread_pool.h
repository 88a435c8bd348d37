// Persistent worker threads for the forward pass. One pool per engine; the thread that calls
// parallel_for takes part as thread 0, so a pool of `n` threads starts n - 1 workers.
//
// Work is a range of items [0, n_items) claimed in chunks through an atomic counter, so faster
// threads take more chunks. The caller waits only for chunks that were claimed, never for a
// worker that has not woken up yet, so a descheduled worker delays nothing when the machine is
// oversubscribed. Between jobs the workers spin briefly, then yield, then sleep on a condition
// variable, so an idle engine costs no CPU.
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

  // Runs fn(begin, end, thread_index) over [0, n_items) in chunks of `chunk` items and returns
  // when every chunk is done. thread_index is in [0, size()). Not reentrant: one caller at a time.
  template <typename F>
  void parallel_for(int64_t n_items, int64_t chunk, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    auto call = [](void* ctx, int64_t begin, int64_t end, int thread) { (*static_cast<Fn*>(ctx))(begin, end, thread); };
    run(call, const_cast<void*>(static_cast<const void*>(&fn)), n_items, chunk < 1 ? 1 : chunk);
  }

  // Chunk size that gives each thread about four chunks of a range of n_items, at least
  // min_chunk items each: enough chunks to even out uneven threads, few enough that claiming a
  // chunk stays cheap next to computing it.
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
    std::atomic<int64_t> chunk{1};
  };

  void run(CallFn call, void* ctx, int64_t n_items, int64_t chunk);
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
  // Generation of the newest job. The caller increments it with release, under mutex_ so a worker
  // going to sleep cannot miss the change. Workers read it with acquire.
  alignas(64) std::atomic<uint32_t> generation_{0};
  // Set once by the destructor (release, under mutex_). Workers read it with acquire.
  alignas(64) std::atomic<bool> stop_{false};

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
};

}  // namespace geb
