// Owner of a model's bytes: an aligned private copy of the file or of the caller's buffer.
//
// The file is read, not memory-mapped: a mapping would let a later rewrite or truncation of the
// file change (or SIGBUS) data the reader already validated. Once a session is built from the
// bytes it keeps only what it packed and copied, and the bytes are freed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/aligned_buffer.h"

namespace rtmobile {

class ModelBytes {
 public:
  // Throws Error(kIo) for a path that cannot be read or is not a regular file (a FIFO, device
  // or directory: checked before anything can block), and Error(kResourceLimit) for a file
  // larger than `max_bytes`.
  static ModelBytes read_file(const std::string& path, uint64_t max_bytes);
  static ModelBytes copy(const void* data, size_t size);

  const uint8_t* data() const { return buffer_.data(); }
  size_t size() const { return buffer_.size(); }

 private:
  AlignedBuffer<uint8_t> buffer_;
};

}  // namespace rtmobile
