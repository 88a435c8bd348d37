// SPDX-License-Identifier: MIT
// The thread that runs an engine's forward steps, one at a time, so that the engine always
// steps on the same thread and the main thread hands it a step without going through the libuv
// thread pool. After a step the thread polls for the next one for a short while before it
// sleeps: a decode loop posts its next step within tens of microseconds, and a polling thread
// takes it without a futex wake-up. Plain C++; the binding settles the step's promise.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace geb::binding {

class StepThread {
 public:
  using RunFn = void (*)(void* job);

  // Starts the thread, which calls run(job) for each posted job. Throws std::system_error when
  // the thread cannot start.
  explicit StepThread(RunFn run);
  // Stops and joins the thread (see stop()).
  ~StepThread();
  StepThread(const StepThread&) = delete;
  StepThread& operator=(const StepThread&) = delete;

  // Hands a job to the thread. One job at a time: the caller posts the next one only after
  // run() of the previous one has returned (the binding waits for the step to settle).
  void post(void* job);

  // Lets a job that is running finish, runs a job that was posted and not yet taken, then ends
  // the thread and joins it. Idempotent. Call it from the thread that posts.
  void stop();

 private:
  void main();
  // Returns the next job, or nullptr once stop() was called and no job is pending.
  void* wait_for_job();

  RunFn run_;
  // The posted job not yet taken. The poster stores it (seq_cst) and then reads sleeping_
  // (seq_cst); the thread sets sleeping_ under mutex_ before its last check of pending_, so
  // either the poster sees it sleeping and notifies under mutex_, or the thread sees the job.
  alignas(64) std::atomic<void*> pending_{nullptr};
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace geb::binding
