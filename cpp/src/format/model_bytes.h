// Owner of a model's bytes: a read-only memory map of the file, or an aligned private copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/aligned_buffer.h"

namespace rtmobile {

class ModelBytes {
 public:
  static ModelBytes map_file(const std::string& path);  // throws Error(kIo)
  static ModelBytes copy(const void* data, size_t size);

  ModelBytes(ModelBytes&& other) noexcept;
  ModelBytes& operator=(ModelBytes&& other) noexcept;
  ModelBytes(const ModelBytes&) = delete;
  ModelBytes& operator=(const ModelBytes&) = delete;
  ~ModelBytes();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  ModelBytes() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* map_ = nullptr;  // non-null when memory-mapped
  AlignedBuffer<uint8_t> copy_;
};

}  // namespace rtmobile
