#include "runtime/thread_pool.h"

#include <chrono>

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

// How long a wait spins before it sleeps. A partner that is running arrives within a few
// microseconds (one frame's share of a layer); one that is not (preempted by another process,
// or more threads than cores) will not arrive before the scheduler's next time slice, and
// spinning for it would only keep it off the core.
constexpr auto kSpinTime = std::chrono::microseconds(50);
constexpr int kPausesPerClockRead = 32;

}  // namespace

template <typename Done>
void ThreadPool::wait_until(Done done) {
  if (done()) return;
  const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
  for (;;) {
    for (int i = 0; i < kPausesPerClockRead; ++i) {
      RTM_CPU_RELAX();
      if (done()) return;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
  }
  std::unique_lock<std::mutex> lock(sleep_mutex_);
  // Store-load pairing with wake_sleepers(), all seq_cst: either the waker's load sees
  // sleepers_ > 0, or this thread's done() sees the waker's change (no lost wake-up).
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  if (!done()) {
    sleeps_.fetch_add(1, std::memory_order_relaxed);
    sleep_cv_.wait(lock, done);
  }
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

void ThreadPool::wake_sleepers() {
  if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
  // Taking the mutex orders this notify after any sleeper's last done() check: a sleeper holds
  // the mutex from that check until it is inside wait().
  { std::lock_guard<std::mutex> lock(sleep_mutex_); }
  sleep_cv_.notify_all();
}

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
  stop_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  wake_sleepers();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run(const std::function<void(int)>& task) {
  if (threads_ == 1) {
    task(0);
    return;
  }
  task_ = &task;
  unfinished_.store(threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);  // publishes task_ and unfinished_
  wake_sleepers();
  task(0);
  wait_until([this] { return unfinished_.load(std::memory_order_seq_cst) == 0; });
}

void ThreadPool::worker_loop(int tid) {
  uint64_t seen = 0;
  for (;;) {
    wait_until([&] { return generation_.load(std::memory_order_seq_cst) != seen; });
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_relaxed)) return;
    (*task_)(tid);
    if (unfinished_.fetch_sub(1, std::memory_order_seq_cst) == 1) wake_sleepers();
  }
}

void ThreadPool::barrier() {
  if (threads_ == 1) return;
  const uint32_t phase = barrier_phase_.load(std::memory_order_acquire);
  if (barrier_arrived_.fetch_add(1, std::memory_order_acq_rel) == threads_ - 1) {
    barrier_arrived_.store(0, std::memory_order_relaxed);
    barrier_phase_.store(phase + 1, std::memory_order_seq_cst);
    wake_sleepers();
  } else {
    wait_until([&] { return barrier_phase_.load(std::memory_order_seq_cst) != phase; });
  }
}

}  // namespace rtmobile
