// A persistent pool: threads are created once per Session, never per frame. run() executes a
// task on every thread (the caller is thread 0) and barrier() synchronises them inside it, so
// a whole recurrent layer over a chunk costs one wake-up plus two barriers per frame.
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

 private:
  void worker_loop(int tid);
  void stop_workers();  // wakes every worker to exit and joins it

  const int threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> unfinished_{0};
  const std::function<void(int)>* task_ = nullptr;
  alignas(64) std::atomic<int> barrier_arrived_{0};
  alignas(64) std::atomic<uint32_t> barrier_phase_{0};
};

}  // namespace rtmobile
