// The runtime end to end against a float64 reference: GRU and LSTM stacks, BSP and dense,
// f32 and f16, every ISA, several thread counts; streaming in chunks equals run().
#include <random>
#include <string>
#include <vector>

#include "rtmobile/rtmobile.hpp"
#include "test_model.h"
#include "test_util.h"

namespace {

struct Config {
  uint32_t kind, input;
  std::vector<uint32_t> hidden;
  uint32_t output, num_r, num_c;
  double keep;
  bool f16, norm;
};

}  // namespace

TEST_CASE("run() matches the float64 reference for every ISA and thread count") {
  const std::vector<Config> configs = {
      {1, 13, {19}, 7, 1, 1, 1.0, false, false},        // dense, odd sizes
      {1, 13, {24, 17}, 5, 4, 2, 0.5, false, true},     // BSP, 2 layers, norm
      {1, 40, {33, 33, 20}, 11, 8, 3, 0.4, true, false},  // BSP f16, 3 layers
      {2, 9, {21, 12}, 6, 3, 2, 0.6, false, false},     // LSTM
  };
  const size_t frames = 70;  // crosses the 64-frame chunk and the 16-frame tile
  for (size_t ci = 0; ci < configs.size(); ++ci) {
    const Config& c = configs[ci];
    const auto model = rtm_test::random_model(static_cast<uint32_t>(ci + 11), c.kind, c.input,
                                              c.hidden, c.output, c.num_r, c.num_c, c.keep, c.f16,
                                              c.norm);
    const auto bytes = rtm_test::encode(model);
    const auto x = rtm_test::random_frames(frames * c.input, static_cast<uint32_t>(ci));
    const auto want = rtm_test::reference_forward(model, x, frames);
    for (const std::string& isa : rtmobile::available_isas()) {
      for (int threads : {1, 2, 3}) {
        rtmobile::SessionOptions opt;
        opt.isa = isa;
        opt.threads = threads;
        auto session = rtmobile::Session::from_memory(bytes.data(), bytes.size(), opt);
        CHECK(session.info().isa == isa);
        std::vector<float> got(frames * c.output);
        session.run(x.data(), frames, got.data());
        double worst = 0;
        for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
        if (worst > 1e-4)
          std::printf("  config %zu isa %s threads %d: max err %.3g\n", ci, isa.c_str(), threads,
                      worst);
        CHECK(worst <= 1e-4);

        // Streaming in uneven chunks gives exactly the offline logits.
        auto stream = session.stream();
        std::vector<float> streamed(frames * c.output);
        rtm_test::push_in_growing_chunks(frames, 1, [&](size_t t, size_t n) {
          stream.push(x.data() + t * c.input, n, streamed.data() + t * c.output);
        });
        CHECK(stream.frames_seen() == frames);
        for (size_t i = 0; i < got.size(); ++i) CHECK(streamed[i] == got[i]);
        stream.reset();
        std::vector<float> again(c.output);
        stream.push(x.data(), 1, again.data());
        for (size_t k = 0; k < c.output; ++k) CHECK(again[k] == got[k]);
      }
    }
  }
}

TEST_CASE("info reports dimensions and compression") {
  const auto model = rtm_test::random_model(5, 1, 16, {32}, 4, 4, 2, 0.5, false, false);
  const auto bytes = rtm_test::encode(model);
  auto session = rtmobile::Session::from_memory(bytes.data(), bytes.size());
  const auto& info = session.info();
  CHECK(info.kind == "gru");
  CHECK(info.input_dim == 16 && info.output_dim == 4);
  CHECK(info.hidden_dims.size() == 1 && info.hidden_dims[0] == 32);
  CHECK(info.dense_weights == 96u * 16 + 96u * 32 + 4u * 32);
  CHECK(info.compression_rate > 1.0);
  CHECK(info.labels.size() == 4);
}

TEST_CASE("bad options are rejected with a message") {
  const auto model = rtm_test::random_model(5, 1, 16, {32}, 4, 1, 1, 1.0, false, false);
  const auto bytes = rtm_test::encode(model);
  rtmobile::SessionOptions opt;
  opt.threads = -1;
  CHECK_THROWS(rtmobile::Error, rtmobile::Session::from_memory(bytes.data(), bytes.size(), opt),
               "threads");
  opt.threads = 1;
  opt.isa = "nosuchisa";
  CHECK_THROWS(rtmobile::Error, rtmobile::Session::from_memory(bytes.data(), bytes.size(), opt),
               "nosuchisa");
  auto session = rtmobile::Session::from_memory(bytes.data(), bytes.size());
  CHECK_THROWS(rtmobile::Error, session.run(nullptr, 3, nullptr), "null");
}

TEST_CASE("stream state: get, set on another stream, continue = one uninterrupted stream") {
  for (uint32_t kind : {1u, 2u}) {  // GRU, LSTM
    const auto model = rtm_test::random_model(21 + kind, kind, 12, {20, 9}, 5, 4, 2, 0.6, false,
                                              true);
    const auto bytes = rtm_test::encode(model);
    auto session = rtmobile::Session::from_memory(bytes.data(), bytes.size());
    const size_t frames = 30, cut = 13;
    const auto x = rtm_test::random_frames(frames * 12, kind);
    std::vector<float> want(frames * 5), got(frames * 5);
    session.run(x.data(), frames, want.data());

    auto first = session.stream();
    CHECK(first.state_size() == (kind == 2 ? 2u : 1u) * (20 + 9));
    first.push(x.data(), cut, got.data());
    std::vector<float> state(first.state_size());
    first.get_state(state.data(), state.size());
    auto second = session.stream();  // a fork: continues from the first one's state
    second.set_state(state.data(), state.size());
    CHECK(second.frames_seen() == 0);
    second.push(x.data() + cut * 12, frames - cut, got.data() + cut * 5);
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == want[i]);
    std::vector<float> back(state.size());
    second.get_state(back.data(), back.size());
    std::vector<float> end(state.size());
    auto whole = session.stream();
    std::vector<float> scratch(frames * 5);
    whole.push(x.data(), frames, scratch.data());
    whole.get_state(end.data(), end.size());
    for (size_t i = 0; i < end.size(); ++i) CHECK(back[i] == end[i]);

    // Bad input is rejected and leaves the state as it was.
    CHECK_THROWS(rtmobile::Error, second.set_state(state.data(), state.size() - 1),
                 "state_size() = " + std::to_string(state.size()));
    CHECK_THROWS(rtmobile::Error, second.set_state(nullptr, state.size()), "null pointer");
    CHECK_THROWS(rtmobile::Error, second.get_state(back.data(), back.size() + 1), "state_size()");
    std::vector<float> bad(state);
    bad[21] = std::nanf("");
    CHECK_THROWS(rtmobile::Error, second.set_state(bad.data(), bad.size()),
                 kind == 2 ? "layer 0 c[1] is NaN" : "layer 1 h[1] is NaN");
    std::vector<float> after(state.size());
    second.get_state(after.data(), after.size());
    for (size_t i = 0; i < end.size(); ++i) CHECK(after[i] == end[i]);
  }
}

TEST_MAIN()
