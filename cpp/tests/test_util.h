// A minimal check harness: each test binary runs its cases and exits non-zero on failure.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace rtm_test {

struct Case {
  const char* name;
  std::function<void()> fn;
};

inline std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}

inline int& failures() {
  static int n = 0;
  return n;
}

struct Register {
  Register(const char* name, std::function<void()> fn) { cases().push_back({name, std::move(fn)}); }
};

// Calls push(t, n) over frames [0, frames) in chunks of first, 2 first + 1, ... frames: uneven
// chunk sizes that cross the engine's internal chunk and tile boundaries.
template <typename Push>
void push_in_growing_chunks(size_t frames, size_t first, Push push) {
  for (size_t t = 0, step = first; t < frames; step = step * 2 + 1) {
    const size_t n = step < frames - t ? step : frames - t;
    push(t, n);
    t += n;
  }
}

inline int run_all() {
  int failed_cases = 0;
  for (const Case& c : cases()) {
    const int before = failures();
    c.fn();
    const bool ok = failures() == before;
    std::printf("[%s] %s\n", ok ? "  OK  " : " FAIL ", c.name);
    if (!ok) ++failed_cases;
  }
  std::printf("%zu passed, %d failed\n", cases().size() - failed_cases, failed_cases);
  return failed_cases == 0 ? 0 : 1;
}

}  // namespace rtm_test

#define RTM_CONCAT2(a, b) a##b
#define RTM_CONCAT(a, b) RTM_CONCAT2(a, b)
#define TEST_CASE(name)                                                            \
  static void RTM_CONCAT(test_fn_, __LINE__)();                                    \
  static rtm_test::Register RTM_CONCAT(test_reg_, __LINE__)(name, RTM_CONCAT(test_fn_, __LINE__)); \
  static void RTM_CONCAT(test_fn_, __LINE__)()

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);      \
      ++rtm_test::failures();                                                      \
    }                                                                              \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                      \
  do {                                                                             \
    const double va_ = (a), vb_ = (b);                                             \
    if (!(std::fabs(va_ - vb_) <= (tol))) {                                        \
      std::printf("  %s:%d: |%s - %s| = |%.9g - %.9g| > %g\n", __FILE__, __LINE__, #a, #b, va_, \
                  vb_, static_cast<double>(tol));                                  \
      ++rtm_test::failures();                                                      \
    }                                                                              \
  } while (0)

// Checks that `stmt` throws E and that the message contains `fragment`.
#define CHECK_THROWS(E, stmt, fragment)                                            \
  do {                                                                             \
    bool thrown_ = false;                                                          \
    try {                                                                          \
      stmt;                                                                        \
    } catch (const E& e_) {                                                        \
      thrown_ = true;                                                              \
      const std::string want_(fragment);                                           \
      if (std::string(e_.what()).find(want_) == std::string::npos) {               \
        std::printf("  %s:%d: message '%s' lacks '%s'\n", __FILE__, __LINE__, e_.what(),  \
                    want_.c_str());                                                \
        ++rtm_test::failures();                                                    \
      }                                                                            \
    }                                                                              \
    if (!thrown_) {                                                                \
      std::printf("  %s:%d: %s did not throw %s\n", __FILE__, __LINE__, #stmt, #E); \
      ++rtm_test::failures();                                                      \
    }                                                                              \
  } while (0)

#define TEST_MAIN() \
  int main() { return rtm_test::run_all(); }
