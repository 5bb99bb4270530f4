// A persistent pool: threads are created once per Session, never per frame. run() executes a
// task on every thread (the caller is thread 0) and barrier() synchronises them inside it.
//
// Every wait (a worker waiting for work, a barrier, the caller waiting for the workers) spins
// for a short, bounded time and then sleeps on a condition variable. Spinning keeps the
// back-to-back case (a frame every few microseconds) cheap; sleeping means a thread whose
// partner was preempted by another process gives its core away instead of burning it, so a
// busy machine slows the pool down instead of collapsing it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace rtmobile {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return threads_; }

  // Calls task(tid) for tid in [0, size()) concurrently and returns when all have finished.
  // The task must not throw.
  void run(const std::function<void(int)>& task);

  // Inside run(): every thread must call it the same number of times.
  void barrier();

  // How many times a wait has gone to sleep since construction (for tests and tuning).
  uint64_t sleeps() const { return sleeps_.load(std::memory_order_relaxed); }

 private:
  void worker_loop(int tid);
  void stop_workers();  // wakes every worker to exit and joins it
  // Spins for a bounded time until done(), then sleeps until a wake_sleepers() call makes it
  // true. done() must read only atomics, with seq_cst loads of what wakers change with seq_cst
  // writes (no fences: ThreadSanitizer does not model them).
  template <typename Done>
  void wait_until(Done done);
  // Call after changing a waited-on atomic (the change must come first).
  void wake_sleepers();

  const int threads_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> unfinished_{0};
  const std::function<void(int)>* task_ = nullptr;
  alignas(64) std::atomic<int> barrier_arrived_{0};
  alignas(64) std::atomic<uint32_t> barrier_phase_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<uint64_t> sleeps_{0};
  std::mutex sleep_mutex_;
  std::condition_variable sleep_cv_;
};

}  // namespace rtmobile
