// What a session promises about its inputs once loaded: the model file is never read again,
// non-regular paths are refused without blocking, memory is planned (and bounded) before it is
// allocated, and a non-finite input frame never silently poisons a stream.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "rtmobile/rtmobile.hpp"
#include "test_model.h"
#include "test_util.h"

// Live and peak heap bytes, through a replaced global operator new: checks the memory plan is
// an upper bound of what loading really allocates.
namespace {

std::atomic<size_t> g_live{0};
std::atomic<size_t> g_peak{0};
constexpr size_t kHeader = 64;  // keeps every alignment up to 64 and stores the size

void* counted_alloc(size_t size, size_t align) {
  if (align < kHeader) align = kHeader;
  const size_t total = (size + align + align - 1) / align * align;
  void* raw = std::aligned_alloc(align, total);
  if (raw == nullptr) throw std::bad_alloc();
  // The size and alignment sit just before the returned pointer, which stays aligned.
  uint8_t* user = static_cast<uint8_t*>(raw) + align;
  std::memcpy(user - sizeof(size_t), &size, sizeof size);
  std::memcpy(user - 2 * sizeof(size_t), &align, sizeof align);
  const size_t live = g_live.fetch_add(size) + size;
  size_t peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
  return user;
}

void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  uint8_t* user = static_cast<uint8_t*>(p);
  size_t size, align;
  std::memcpy(&size, user - sizeof(size_t), sizeof size);
  std::memcpy(&align, user - 2 * sizeof(size_t), sizeof align);
  g_live.fetch_sub(size);
  std::free(user - align);
}

}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n, kHeader); }
void* operator new[](std::size_t n) { return counted_alloc(n, kHeader); }
void* operator new(std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n, kHeader);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n, kHeader);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }

namespace {

using rtmobile::ErrorCode;
using rtmobile::Session;
using rtmobile::SessionOptions;

// Runs stmt and checks it throws rtmobile::Error with `code` and a message containing `text`.
#define CHECK_ERROR(stmt, want_code, text)                                                   \
  do {                                                                                  \
    bool thrown_ = false;                                                               \
    try {                                                                               \
      stmt;                                                                             \
    } catch (const rtmobile::Error& e_) {                                               \
      thrown_ = true;                                                                   \
      CHECK(e_.code() == (want_code));                                                       \
      if (std::string(e_.what()).find(text) == std::string::npos) {                    \
        std::printf("  %s:%d: message '%s' lacks '%s'\n", __FILE__, __LINE__, e_.what(), \
                    std::string(text).c_str());                                         \
        ++rtm_test::failures();                                                         \
      }                                                                                 \
    }                                                                                   \
    CHECK(thrown_);                                                                     \
  } while (0)

// A scratch directory removed (with its files) at the end of the scope.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rtm_safety_XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    if (made == nullptr) std::abort();
    path_ = made;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    for (const std::string& f : files_) ::unlink(f.c_str());
    ::rmdir(path_.c_str());
  }
  std::string file(const std::string& name) {
    files_.push_back(path_ + "/" + name);
    return files_.back();
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size())
    std::abort();
  std::fclose(f);
}

rtm_test::TestModel model_a() {
  return rtm_test::random_model(3, 1, 12, {16, 10}, 6, 4, 2, 0.5, false, true);
}

}  // namespace

TEST_CASE("after from_file the file is never read again: rewrite, truncate, replace, delete") {
  const auto model = model_a();
  const auto bytes = rtm_test::encode(model);
  const auto other = rtm_test::encode(rtm_test::random_model(4, 1, 12, {16, 10}, 6, 1, 1, 1.0,
                                                             false, false));
  const size_t frames = 20;
  const auto x = rtm_test::random_frames(frames * 12, 1);
  std::vector<float> want(frames * 6), got(frames * 6);
  for (int change = 0; change < 4; ++change) {
    TempDir dir;
    const std::string path = dir.file("model.bspc");
    write_file(path, bytes);
    SessionOptions opt;
    opt.threads = 2;
    Session session = Session::from_file(path, opt);
    rtmobile::Stream stream = session.stream();
    session.run(x.data(), frames, want.data());
    stream.push(x.data(), frames / 2, got.data());
    if (change == 0) {  // every byte after the header flipped, in place
      std::vector<uint8_t> garbage(bytes);
      for (size_t i = 64; i < garbage.size(); ++i) garbage[i] ^= 0xA5;
      const int fd = ::open(path.c_str(), O_WRONLY);
      CHECK(fd >= 0 && ::pwrite(fd, garbage.data(), garbage.size(), 0) ==
                           static_cast<ssize_t>(garbage.size()));
      ::close(fd);
    } else if (change == 1) {
      CHECK(::truncate(path.c_str(), 100) == 0);
    } else if (change == 2) {
      write_file(path, other);  // `cp other.bspc model.bspc`
    } else {
      CHECK(::unlink(path.c_str()) == 0);
    }
    std::vector<float> again(frames * 6);
    session.run(x.data(), frames, again.data());
    CHECK(again == want);
    stream.push(x.data() + frames / 2 * 12, frames - frames / 2, got.data() + frames / 2 * 6);
    CHECK(got == want);
  }
}

TEST_CASE("FIFOs, directories and devices are refused without blocking") {
  TempDir dir;
  const std::string fifo = dir.file("model.fifo");
  CHECK(::mkfifo(fifo.c_str(), 0600) == 0);
  // Opening a FIFO for reading blocks until a writer comes; there is none: a hang fails the
  // test by ctest's timeout.
  CHECK_ERROR(Session::from_file(fifo), ErrorCode::kIo,
              "model path '" + fifo + "' is a FIFO (named pipe), not a regular file");
  CHECK_ERROR(Session::from_file("/tmp"), ErrorCode::kIo,
              "model path '/tmp' is a directory, not a regular file");
  CHECK_ERROR(Session::from_file("/dev/zero"), ErrorCode::kIo,
              "model path '/dev/zero' is a character device, not a regular file");
  CHECK_ERROR(Session::from_file(dir.file("missing.bspc")), ErrorCode::kIo,
              "cannot open model file");
}

TEST_CASE("memory is planned from the headers: an upper bound, checked before allocating") {
  // hidden 512 with 4 thread partitions: packed weights, scratch and chunk buffers are all
  // non-trivial next to the file.
  const auto model = rtm_test::random_model(5, 1, 40, {512}, 30, 16, 4, 0.3, false, true);
  const auto bytes = rtm_test::encode(model);
  for (int threads : {1, 4}) {
    for (const char* weights : {"stored", "f16"}) {
      SessionOptions opt;
      opt.threads = threads;
      opt.weights = weights;
      const size_t before = g_live.load();
      g_peak.store(before);
      Session session = Session::from_memory(bytes.data(), bytes.size(), opt);
      const size_t peak = g_peak.load() - before;
      const uint64_t planned = session.info().planned_bytes;
      if (peak > planned)
        std::printf("  threads %d weights %s: peak %zu > planned %llu\n", threads, weights, peak,
                    static_cast<unsigned long long>(planned));
      CHECK(peak <= planned);
      CHECK(planned < 8 * peak);  // a bound, but not a useless one
    }
  }

  // Over the limit: refused with both figures, before the large allocations happen.
  SessionOptions opt;
  opt.chunk_frames = 4096;  // 4096 frames x 1536 gate rows x 4 bytes = 24 MiB of buffers
  opt.memory_limit_mb = 8;
  const size_t before = g_live.load();
  g_peak.store(before);
  CHECK_ERROR(Session::from_memory(bytes.data(), bytes.size(), opt), ErrorCode::kResourceLimit,
              "more than the session's memory limit of 8 MiB; raise memory_limit_mb");
  CHECK(g_peak.load() - before < 2 * bytes.size() + (size_t{1} << 20));
  opt.memory_limit_mb = 64;
  Session fits = Session::from_memory(bytes.data(), bytes.size(), opt);
  CHECK(fits.info().planned_bytes > (uint64_t{8} << 20));
  CHECK(fits.info().planned_bytes <= (uint64_t{64} << 20));

  // A file larger than the limit is refused before it is read.
  TempDir dir;
  const std::string path = dir.file("big.bspc");
  std::vector<uint8_t> big(bytes);
  big.resize((size_t{3} << 20), 0);  // zero padding after the last section is valid
  const uint64_t size = big.size();
  std::memcpy(big.data() + 16, &size, 8);
  rtm_test::fix_checksum(big);
  write_file(path, big);
  SessionOptions small;
  small.memory_limit_mb = 2;
  CHECK_ERROR(Session::from_file(path, small), ErrorCode::kResourceLimit,
              "model file '" + path + "' is 3145728 bytes, more than the session's memory "
              "limit of 2 MiB; raise memory_limit_mb to load it");
  small.memory_limit_mb = 0;  // the default, 1024 MiB
  CHECK(Session::from_file(path, small).info().planned_bytes > size);
}

TEST_CASE("non-finite input: 'raise' rejects the call and keeps the state; 'propagate' doesn't") {
  const auto model = model_a();
  const auto bytes = rtm_test::encode(model);
  const size_t frames = 12, in = 12, out = 6;
  const auto x = rtm_test::random_frames(frames * in, 2);
  std::vector<float> want(frames * out), got(frames * out);
  Session session = Session::from_memory(bytes.data(), bytes.size());
  CHECK(session.info().nonfinite == "raise");
  session.run(x.data(), frames, want.data());

  rtmobile::Stream stream = session.stream();
  stream.push(x.data(), 5, got.data());
  std::vector<float> bad(x.begin() + 5 * in, x.end());
  bad[2 * in + 3] = std::nanf("");
  std::vector<float> scratch(frames * out, 123.0f);
  CHECK_ERROR(stream.push(bad.data(), frames - 5, scratch.data()), ErrorCode::kNonFinite,
              "input frame 2, feature 3 is NaN; nothing was processed");
  CHECK(stream.frames_seen() == 5);
  CHECK(scratch[0] == 123.0f);  // no logits written
  bad[2 * in + 3] = INFINITY;
  CHECK_ERROR(session.run(bad.data(), frames - 5, scratch.data()), ErrorCode::kNonFinite,
              "input frame 2, feature 3 is infinite");
  // The stream goes on as if the bad chunk had never been pushed.
  stream.push(x.data() + 5 * in, frames - 5, got.data() + 5 * out);
  CHECK(got == want);

  SessionOptions opt;
  opt.nonfinite = "propagate";
  Session loose = Session::from_memory(bytes.data(), bytes.size(), opt);
  CHECK(loose.info().nonfinite == "propagate");
  rtmobile::Stream poisoned = loose.stream();
  bad[2 * in + 3] = std::nanf("");
  poisoned.push(bad.data(), frames - 5, scratch.data());
  poisoned.push(x.data(), 1, scratch.data());
  CHECK(std::isnan(scratch[0]));  // the state carries the NaN until reset()
  poisoned.reset();
  poisoned.push(x.data(), 1, scratch.data());
  CHECK(std::isfinite(scratch[0]));

  opt.nonfinite = "ignore";
  CHECK_ERROR(Session::from_memory(bytes.data(), bytes.size(), opt),
              ErrorCode::kInvalidArgument, "nonfinite must be 'raise' or 'propagate', got 'ignore'");
}

TEST_MAIN()
