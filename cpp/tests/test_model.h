// Test-only: random BSP models, a BSPC encoder written straight from docs/bspc.md, and a
// float64 reference forward pass. (The product's writer is the Python one in training/; this
// independent encoder lets the C++ tests, including the sanitizer build, run without Python.)
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "format/crc32.h"
#include "format/half.h"

namespace rtm_test {

struct TestMatrix {
  uint32_t rows = 0, cols = 0, num_r = 1, num_c = 1;
  std::vector<float> w;       // dense, row-major, zero outside the mask
  std::vector<uint8_t> mask;  // BSP support
};

struct TestModel {
  uint32_t kind = 1;  // 1 GRU, 2 LSTM
  uint32_t input = 0, output = 0;
  std::vector<uint32_t> hidden;
  std::vector<TestMatrix> mats;             // ids as in the spec
  std::vector<std::vector<float>> biases;   // same ids
  bool f16 = false, reorder = true, norm = false;
  std::vector<float> mean, var;
  float eps = 1e-5f;
};

// n values from N(0, 1), reproducible from the seed: test input frames.
inline std::vector<float> random_frames(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = d(rng);
  return x;
}

inline uint32_t gates_of(const TestModel& m) { return m.kind == 2 ? 4u : 3u; }

// Values are multiples of 2^-10 in [-0.5, 0.5]: exact in f16, so f32 and f16 files hold the
// same numbers and one reference serves both.
inline float exact_value(std::mt19937& rng) {
  std::uniform_int_distribution<int> d(-512, 512);
  return static_cast<float>(d(rng)) / 1024.0f;
}

inline TestMatrix random_matrix(std::mt19937& rng, uint32_t rows, uint32_t cols, uint32_t num_r,
                                uint32_t num_c, double keep_cols, double keep_rows) {
  TestMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.num_r = num_r;
  m.num_c = num_c;
  std::bernoulli_distribution kc(keep_cols), kr(keep_rows);
  std::vector<uint8_t> col_kept(size_t{num_r} * cols), row_kept(size_t{num_c} * rows);
  for (auto& v : col_kept) v = kc(rng);
  for (auto& v : row_kept) v = kr(rng);
  m.w.assign(size_t{rows} * cols, 0.0f);
  m.mask.assign(size_t{rows} * cols, 0);
  for (uint32_t r = 0; r < rows; ++r) {
    const uint32_t strip = static_cast<uint32_t>(uint64_t{r} * num_r / rows);
    for (uint32_t c = 0; c < cols; ++c) {
      const uint32_t block = static_cast<uint32_t>(uint64_t{c} * num_c / cols);
      if (col_kept[size_t{strip} * cols + c] && row_kept[size_t{block} * rows + r]) {
        m.mask[size_t{r} * cols + c] = 1;
        m.w[size_t{r} * cols + c] = exact_value(rng);
      }
    }
  }
  return m;
}

inline TestModel random_model(uint32_t seed, uint32_t kind, uint32_t input,
                              std::vector<uint32_t> hidden, uint32_t output, uint32_t num_r,
                              uint32_t num_c, double keep, bool f16, bool norm) {
  std::mt19937 rng(seed);
  TestModel m;
  m.kind = kind;
  m.input = input;
  m.output = output;
  m.hidden = hidden;
  m.f16 = f16;
  m.norm = norm;
  const uint32_t g = gates_of(m);
  auto bias = [&](uint32_t n) {
    std::vector<float> b(n);
    for (float& v : b) v = exact_value(rng);
    return b;
  };
  for (size_t l = 0; l < hidden.size(); ++l) {
    const uint32_t in = l == 0 ? input : hidden[l - 1];
    const uint32_t h = hidden[l];
    m.mats.push_back(random_matrix(rng, g * h, in, std::min(num_r, g * h), std::min(num_c, in),
                                   keep, keep));
    m.biases.push_back(bias(g * h));
    m.mats.push_back(random_matrix(rng, g * h, h, std::min(num_r, g * h), std::min(num_c, h),
                                   keep, keep));
    m.biases.push_back(bias(g * h));
  }
  m.mats.push_back(random_matrix(rng, output, hidden.back(), std::min(num_r, output),
                                 std::min(num_c, hidden.back()), keep, keep));
  m.biases.push_back(bias(output));
  if (norm) {
    std::uniform_real_distribution<float> u(0.5f, 2.0f);
    for (uint32_t k = 0; k < input; ++k) {
      m.mean.push_back(u(rng) - 1.0f);
      m.var.push_back(u(rng));
    }
  }
  return m;
}

class Bytes {
 public:
  std::vector<uint8_t> data;
  void u16(uint16_t v) { raw(&v, 2); }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    data.insert(data.end(), b, b + n);
  }
  void align64() { data.resize((data.size() + 63) / 64 * 64, 0); }
};

inline uint16_t exact_half(float v) {  // only for the exact test values above
  if (v == 0.0f) return std::signbit(v) ? 0x8000u : 0u;
  const uint16_t sign = v < 0 ? 0x8000u : 0u;
  float a = std::fabs(v);
  int e = 0;
  const float frac = std::frexp(a, &e);  // a = frac * 2^e, frac in [0.5, 1)
  const int exponent = e - 1 + 15;
  const uint16_t mant = static_cast<uint16_t>(std::lround((frac * 2.0f - 1.0f) * 1024.0f));
  return static_cast<uint16_t>(sign | (exponent << 10) | mant);
}

inline std::vector<uint8_t> encode_matrix(const TestMatrix& m, bool f16, bool reorder) {
  std::vector<uint32_t> strip_ptr, col_block_ptr, perm(m.rows), block_col_ptr{0}, col_idx,
      block_row_ptr{0}, row_idx;
  for (uint32_t i = 0; i <= m.num_r; ++i)
    strip_ptr.push_back(static_cast<uint32_t>(uint64_t{i} * m.rows / m.num_r));
  for (uint32_t j = 0; j <= m.num_c; ++j)
    col_block_ptr.push_back(static_cast<uint32_t>(uint64_t{j} * m.cols / m.num_c));
  for (uint32_t i = 0; i < m.num_r; ++i)  // reversal inside each strip: a real permutation
    for (uint32_t s = strip_ptr[i]; s < strip_ptr[i + 1]; ++s)
      perm[s] = reorder ? strip_ptr[i + 1] - 1 - (s - strip_ptr[i]) : s;
  Bytes values;
  uint64_t value_count = 0;
  for (uint32_t i = 0; i < m.num_r; ++i) {
    for (uint32_t j = 0; j < m.num_c; ++j) {
      std::vector<uint32_t> cols, rows;
      for (uint32_t c = col_block_ptr[j]; c < col_block_ptr[j + 1]; ++c)
        for (uint32_t s = strip_ptr[i]; s < strip_ptr[i + 1]; ++s)
          if (m.mask[size_t{perm[s]} * m.cols + c]) {
            cols.push_back(c);
            break;
          }
      for (uint32_t s = strip_ptr[i]; s < strip_ptr[i + 1]; ++s)
        for (uint32_t c = col_block_ptr[j]; c < col_block_ptr[j + 1]; ++c)
          if (m.mask[size_t{perm[s]} * m.cols + c]) {
            rows.push_back(s - strip_ptr[i]);
            break;
          }
      col_idx.insert(col_idx.end(), cols.begin(), cols.end());
      row_idx.insert(row_idx.end(), rows.begin(), rows.end());
      block_col_ptr.push_back(static_cast<uint32_t>(col_idx.size()));
      block_row_ptr.push_back(static_cast<uint32_t>(row_idx.size()));
      for (uint32_t c : cols)
        for (uint32_t r : rows) {
          const float v = m.w[size_t{perm[strip_ptr[i] + r]} * m.cols + c];
          if (f16) values.u16(exact_half(v));
          else values.f32(v);
          ++value_count;
        }
    }
  }
  Bytes s;
  s.u32(m.rows);
  s.u32(m.cols);
  s.u32(m.num_r);
  s.u32(m.num_c);
  s.u32(f16 ? 2 : 1);
  s.u32(0);
  s.u64(value_count);
  s.u64(col_idx.size());
  s.u64(row_idx.size());
  s.align64();
  for (const auto* a : {&strip_ptr, &col_block_ptr, &perm, &block_col_ptr, &col_idx,
                        &block_row_ptr, &row_idx}) {
    s.raw(a->data(), a->size() * 4);
    s.align64();
  }
  s.raw(values.data.data(), values.data.size());
  return s.data;
}

struct Section {
  uint32_t type, index;
  std::vector<uint8_t> body;
};

inline std::vector<uint8_t> assemble(const std::vector<Section>& sections) {
  Bytes out;
  out.data.resize(64 + 32 * sections.size(), 0);
  out.align64();
  std::vector<uint64_t> offsets;
  for (const Section& s : sections) {
    offsets.push_back(out.data.size());
    out.raw(s.body.data(), s.body.size());
    out.align64();
  }
  // Trim the padding after the last section: file_size ends at the last byte of data.
  out.data.resize(offsets.empty() ? out.data.size() : offsets.back() + sections.back().body.size());
  const uint8_t magic[8] = {'B', 'S', 'P', 'C', '\r', '\n', 0x1A, '\n'};
  uint8_t* h = out.data.data();
  std::memcpy(h, magic, 8);
  const uint16_t major = 1, minor = 0;
  const uint32_t header = 64, count = static_cast<uint32_t>(sections.size());
  const uint64_t size = out.data.size(), dir = 64;
  std::memcpy(h + 8, &major, 2);
  std::memcpy(h + 10, &minor, 2);
  std::memcpy(h + 12, &header, 4);
  std::memcpy(h + 16, &size, 8);
  std::memcpy(h + 24, &dir, 8);
  std::memcpy(h + 32, &count, 4);
  for (size_t e = 0; e < sections.size(); ++e) {
    uint8_t* d = h + 64 + 32 * e;
    const uint64_t sz = sections[e].body.size();
    std::memcpy(d, &sections[e].type, 4);
    std::memcpy(d + 4, &sections[e].index, 4);
    std::memcpy(d + 8, &offsets[e], 8);
    std::memcpy(d + 16, &sz, 8);
  }
  const uint32_t crc = rtmobile::crc32(h + 64, size - 64);
  std::memcpy(h + 36, &crc, 4);
  return out.data;
}

inline void fix_checksum(std::vector<uint8_t>& data) {
  const uint32_t crc = rtmobile::crc32(data.data() + 64, data.size() - 64);
  std::memcpy(data.data() + 36, &crc, 4);
}

inline std::vector<Section> model_sections(const TestModel& m) {
  std::vector<Section> sections;
  Bytes model;
  model.u32(m.kind);
  model.u32(static_cast<uint32_t>(m.hidden.size()));
  model.u32(m.input);
  model.u32(m.output);
  model.u32(m.kind == 2 ? 2 : 1);
  model.u32(1);
  model.u32(m.norm ? 1 : 0);
  model.u32(0);
  for (uint32_t h : m.hidden) model.u32(h);
  sections.push_back({1, 0, model.data});
  Bytes labels;
  labels.u32(m.output);
  std::string blob;
  labels.u32(0);
  for (uint32_t k = 0; k < m.output; ++k) {
    blob += "p" + std::to_string(k);
    labels.u32(static_cast<uint32_t>(blob.size()));
  }
  labels.raw(blob.data(), blob.size());
  sections.push_back({2, 0, labels.data});
  if (m.norm) {
    Bytes norm;
    norm.u32(m.input);
    norm.f32(m.eps);
    for (float v : m.mean) norm.f32(v);
    for (float v : m.var) norm.f32(v);
    sections.push_back({3, 0, norm.data});
  }
  for (uint32_t id = 0; id < m.mats.size(); ++id)
    sections.push_back({4, id, encode_matrix(m.mats[id], m.f16, m.reorder)});
  for (uint32_t id = 0; id < m.biases.size(); ++id) {
    Bytes v;
    v.u32(static_cast<uint32_t>(m.biases[id].size()));
    v.u32(1);
    v.u64(0);
    for (float b : m.biases[id]) v.f32(b);
    sections.push_back({5, id, v.data});
  }
  return sections;
}

inline std::vector<uint8_t> encode(const TestModel& m) { return assemble(model_sections(m)); }

// float64 forward pass in torch.nn.GRU / nn.LSTM conventions.
// half_products: emulate the OpenCL kernels' fp16 arithmetic (RTM_HALF_MATH): each matrix
// input rounded to half, each product w * x rounded to half, the products summed (here in
// float64; the device sums in float). Biases and activations stay exact.
inline std::vector<double> reference_forward(const TestModel& m, const std::vector<float>& x,
                                             size_t frames, bool half_products = false) {
  const uint32_t g = gates_of(m);
  std::vector<std::vector<double>> seq(frames, std::vector<double>(m.input));
  for (size_t t = 0; t < frames; ++t)
    for (uint32_t k = 0; k < m.input; ++k) {
      double v = x[t * m.input + k];
      if (m.norm) v = (v - m.mean[k]) / std::sqrt(double{m.var[k]} + m.eps);
      seq[t][k] = v;
    }
  auto to_half = [](double v) {
    return double{rtmobile::half_to_float(rtmobile::float_to_half(static_cast<float>(v)))};
  };
  auto matvec = [&](const TestMatrix& w, const std::vector<float>& b,
                    const std::vector<double>& v) {
    std::vector<double> y(w.rows);
    std::vector<double> vh(v);
    if (half_products)
      for (double& e : vh) e = to_half(e);
    for (uint32_t r = 0; r < w.rows; ++r) {
      double s = b[r];
      for (uint32_t c = 0; c < w.cols; ++c) {
        const double wv = w.w[size_t{r} * w.cols + c];
        s += half_products ? (wv == 0.0 ? 0.0 : to_half(to_half(wv) * vh[c])) : wv * vh[c];
      }
      y[r] = s;
    }
    return y;
  };
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  for (size_t l = 0; l < m.hidden.size(); ++l) {
    const uint32_t h = m.hidden[l];
    std::vector<double> state(h, 0.0), cell(h, 0.0);
    for (size_t t = 0; t < frames; ++t) {
      const auto gi = matvec(m.mats[2 * l], m.biases[2 * l], seq[t]);
      const auto gh = matvec(m.mats[2 * l + 1], m.biases[2 * l + 1], state);
      std::vector<double> next(h);
      for (uint32_t u = 0; u < h; ++u) {
        if (g == 3) {
          const double r = sig(gi[u] + gh[u]);
          const double z = sig(gi[h + u] + gh[h + u]);
          const double n = std::tanh(gi[2 * h + u] + r * gh[2 * h + u]);
          next[u] = (1 - z) * n + z * state[u];
        } else {
          const double i = sig(gi[u] + gh[u]), f = sig(gi[h + u] + gh[h + u]);
          const double gg = std::tanh(gi[2 * h + u] + gh[2 * h + u]);
          const double o = sig(gi[3 * h + u] + gh[3 * h + u]);
          cell[u] = f * cell[u] + i * gg;
          next[u] = o * std::tanh(cell[u]);
        }
      }
      state = next;
      seq[t] = next;
    }
  }
  std::vector<double> out(frames * m.output);
  for (size_t t = 0; t < frames; ++t) {
    const auto y = matvec(m.mats.back(), m.biases.back(), seq[t]);
    for (uint32_t k = 0; k < m.output; ++k) out[t * m.output + k] = y[k];
  }
  return out;
}

}  // namespace rtm_test
