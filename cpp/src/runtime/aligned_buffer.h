// 64-byte aligned, zero-initialised heap arrays (cache-line aligned weight panels).
// C++17 aligned operator new rather than std::aligned_alloc, which Android's bionic only has
// from API 28 (the library targets android-24, docs/android.md).
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>

namespace rtmobile {

template <typename T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t count) : size_(count) {
    const size_t bytes = ((count * sizeof(T) + 63) / 64) * 64;
    if (bytes == 0) return;
    void* p = ::operator new(bytes, kAlign);  // throws std::bad_alloc
    std::memset(p, 0, bytes);
    data_.reset(static_cast<T*>(p));
  }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return data_.get()[i]; }
  const T& operator[](size_t i) const { return data_.get()[i]; }

 private:
  static constexpr std::align_val_t kAlign{64};
  struct Free {
    void operator()(T* p) const { ::operator delete(p, kAlign); }
  };
  std::unique_ptr<T, Free> data_;
  size_t size_ = 0;
};

}  // namespace rtmobile
