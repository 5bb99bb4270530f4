#include "runtime/thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RTM_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define RTM_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define RTM_CPU_RELAX() ((void)0)
#endif

namespace rtmobile {
namespace {

// Spin briefly (frames arrive every few microseconds in a busy loop), then give the core
// away so an oversubscribed machine does not starve the thread we are waiting for.
template <typename Done>
void spin_until(Done done) {
  for (int i = 0; !done(); ++i) {
    if (i < 4000) {
      RTM_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
  try {
    workers_.reserve(static_cast<size_t>(threads_ - 1));
    for (int tid = 1; tid < threads_; ++tid)
      workers_.emplace_back([this, tid] { worker_loop(tid); });
  } catch (...) {
    // A thread could not be created (std::system_error or std::bad_alloc): stop the ones
    // already running, or destroying their joinable std::threads would call std::terminate.
    stop_workers();
    throw;
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run(const std::function<void(int)>& task) {
  if (threads_ == 1) {
    task(0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = &task;
    unfinished_.store(threads_ - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  task(0);
  spin_until([this] { return unfinished_.load(std::memory_order_acquire) == 0; });
}

void ThreadPool::worker_loop(int tid) {
  uint64_t seen = 0;
  for (;;) {
    // Spin a little for back-to-back runs, then sleep on the condition variable.
    for (int i = 0; i < 20000 && generation_.load(std::memory_order_acquire) == seen; ++i)
      RTM_CPU_RELAX();
    const std::function<void(int)>* task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      seen = generation_.load(std::memory_order_acquire);
      if (stop_) return;
      task = task_;
    }
    (*task)(tid);
    unfinished_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::barrier() {
  if (threads_ == 1) return;
  const uint32_t phase = barrier_phase_.load(std::memory_order_acquire);
  if (barrier_arrived_.fetch_add(1, std::memory_order_acq_rel) == threads_ - 1) {
    barrier_arrived_.store(0, std::memory_order_relaxed);
    barrier_phase_.store(phase + 1, std::memory_order_release);
  } else {
    spin_until([&] { return barrier_phase_.load(std::memory_order_acquire) != phase; });
  }
}

}  // namespace rtmobile
