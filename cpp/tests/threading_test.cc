// The thread pool's waits (no lost wake-up under oversubscription), the usable-CPU count
// (affinity, cgroup quota), the hidden-unit partition, and bit-identical results for any
// thread count, offline and streaming, with the pool really in use.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "rtmobile/rtmobile.hpp"
#include "runtime/cpu_count.h"
#include "runtime/thread_pool.h"
#include "test_model.h"
#include "test_util.h"

namespace {

// Aborts the test binary if `body` has not returned within `limit`: a lost wake-up shows as
// a hang, and a hang must fail the test instead of stalling CI.
template <typename Body>
void with_watchdog(std::chrono::seconds limit, const char* what, Body body) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::thread dog([&] {
    std::unique_lock<std::mutex> lock(m);
    if (!cv.wait_for(lock, limit, [&] { return done; })) {
      std::printf("  watchdog: %s did not finish within %lld s (lost wake-up?)\n", what,
                  static_cast<long long>(limit.count()));
      std::fflush(stdout);
      std::abort();
    }
  });
  body();
  {
    std::lock_guard<std::mutex> lock(m);
    done = true;
  }
  cv.notify_all();
  dog.join();
}

}  // namespace

TEST_CASE("pool: every run and barrier completes under oversubscription (no lost wake-up)") {
  // More threads than this machine has CPUs, and threads that stall past the spin time at
  // random, so waits go to sleep and must be woken.
  for (int threads : {2, 3, 5}) {
    rtmobile::ThreadPool pool(threads);
    std::vector<int> slots(static_cast<size_t>(threads), 0);
    std::atomic<int> wrong{0};
    with_watchdog(std::chrono::seconds(120), "pool stress", [&] {
      for (int iter = 0; iter < 600; ++iter) {
        pool.run([&](int tid) {
          std::mt19937 rng(static_cast<uint32_t>(iter * 131 + tid));
          for (int step = 0; step < 3; ++step) {
            if (rng() % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(150));
            slots[static_cast<size_t>(tid)] = iter * 3 + step;
            pool.barrier();
            // After the barrier every thread's write of this step is visible.
            for (int v : slots)
              if (v != iter * 3 + step) wrong.fetch_add(1);
            pool.barrier();
          }
        });
        for (int v : slots) CHECK(v == iter * 3 + 2);
        // Idle gaps longer than the spin time make the workers sleep between runs.
        if (iter % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
    CHECK(wrong.load() == 0);
    CHECK(pool.sleeps() > 0);  // the blocking path was exercised
  }
}

TEST_CASE("pool: destruction wakes sleeping workers") {
  with_watchdog(std::chrono::seconds(60), "pool destruction", [] {
    for (int i = 0; i < 50; ++i) {
      rtmobile::ThreadPool pool(4);
      pool.run([](int) {});
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // workers go to sleep
    }
  });
}

TEST_CASE("cgroup quotas are read as CPUs, rounded up") {
  using rtmobile::cpus_from_cgroup_v1;
  using rtmobile::cpus_from_cgroup_v2;
  CHECK(!cpus_from_cgroup_v2("max 100000\n").has_value());
  CHECK(cpus_from_cgroup_v2("200000 100000\n").value_or(0) == 2);
  CHECK(cpus_from_cgroup_v2("150000 100000").value_or(0) == 2);
  CHECK(cpus_from_cgroup_v2("50000 100000").value_or(0) == 1);
  CHECK(!cpus_from_cgroup_v2("").has_value());
  CHECK(!cpus_from_cgroup_v2("garbage").has_value());
  CHECK(!cpus_from_cgroup_v2("12x 100000").has_value());
  CHECK(!cpus_from_cgroup_v2("-1 100000").has_value());
  CHECK(!cpus_from_cgroup_v1(-1, 100000).has_value());
  CHECK(cpus_from_cgroup_v1(300000, 100000).value_or(0) == 3);
  CHECK(cpus_from_cgroup_v1(1, 100000).value_or(0) == 1);
  CHECK(!cpus_from_cgroup_v1(100000, 0).has_value());
  CHECK(rtmobile::usable_cpus() >= 1);
}

#if defined(__linux__)
TEST_CASE("the default thread count follows the CPUs this thread may run on") {
  const auto model = rtm_test::random_model(3, 1, 16, {32}, 4, 4, 2, 0.5, false, false);
  const auto bytes = rtm_test::encode(model);
  cpu_set_t saved;
  CPU_ZERO(&saved);
  CHECK(sched_getaffinity(0, sizeof saved, &saved) == 0);
  int first = -1;
  for (int c = 0; c < CPU_SETSIZE && first < 0; ++c)
    if (CPU_ISSET(c, &saved)) first = c;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
  CHECK(rtmobile::usable_cpus() == 1);
  {
    auto session = rtmobile::Session::from_memory(bytes.data(), bytes.size());
    CHECK(session.info().threads == 1);
  }
  CHECK(sched_setaffinity(0, sizeof saved, &saved) == 0);
  auto session = rtmobile::Session::from_memory(bytes.data(), bytes.size());
  const int cpus = std::min(CPU_COUNT(&saved), 4);
  CHECK(session.info().threads == std::min(cpus, rtmobile::usable_cpus()));
}
#endif

TEST_CASE("results are bit-identical for 1 to 4 threads, offline and streaming") {
  // Large enough (> 160k weights) that even a one-frame push runs in the pool when the
  // thread count is explicit; GRU and LSTM, f32 and f16, reordered BSP blocks.
  struct Config {
    uint32_t kind;
    std::vector<uint32_t> hidden;
    uint32_t num_r, num_c;
    double keep;
    bool f16;
  };
  const std::vector<Config> configs = {
      {1, {200, 120}, 24, 4, 0.9, false},
      {2, {200}, 16, 2, 0.95, true},
  };
  const size_t frames = 40;
  for (size_t ci = 0; ci < configs.size(); ++ci) {
    const Config& c = configs[ci];
    const auto model = rtm_test::random_model(static_cast<uint32_t>(40 + ci), c.kind, 48,
                                              c.hidden, 9, c.num_r, c.num_c, c.keep, c.f16,
                                              true);
    const auto bytes = rtm_test::encode(model);
    const auto x = rtm_test::random_frames(frames * 48, static_cast<uint32_t>(ci));
    std::vector<float> want;
    for (int threads = 1; threads <= 4; ++threads) {
      rtmobile::SessionOptions opt;
      opt.threads = threads;
      auto session = rtmobile::Session::from_memory(bytes.data(), bytes.size(), opt);
      CHECK(session.info().stored_weights > 160000);
      std::vector<float> got(frames * 9), streamed(frames * 9);
      session.run(x.data(), frames, got.data());
      auto stream = session.stream();
      rtm_test::push_in_growing_chunks(frames, 1, [&](size_t t, size_t n) {
        stream.push(x.data() + t * 48, n, streamed.data() + t * 9);
      });
      if (want.empty()) want = got;
      size_t differ = 0;
      for (size_t i = 0; i < got.size(); ++i)
        differ += (got[i] != want[i]) + (streamed[i] != want[i]);
      if (differ != 0)
        std::printf("  config %zu threads %d: %zu values differ from 1 thread\n", ci, threads,
                    differ);
      CHECK(differ == 0);
    }
  }
}

TEST_MAIN()
