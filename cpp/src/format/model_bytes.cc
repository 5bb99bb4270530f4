#include "format/model_bytes.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "rtmobile/rtmobile.hpp"

namespace rtmobile {

ModelBytes ModelBytes::map_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(ErrorCode::kIo, "cannot open model file '" + path + "': " + std::strerror(errno));
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const int err = errno;
    ::close(fd);
    throw Error(ErrorCode::kIo, "model path '" + path + "' is not a regular file" +
                                    (err ? std::string(": ") + std::strerror(err) : ""));
  }
  ModelBytes bytes;
  bytes.size_ = static_cast<size_t>(st.st_size);
  if (bytes.size_ == 0) {
    ::close(fd);
    return bytes;  // the parser reports an empty file precisely
  }
  void* map = ::mmap(nullptr, bytes.size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (map == MAP_FAILED)
    throw Error(ErrorCode::kIo, "cannot map model file '" + path + "': " + std::strerror(err));
  bytes.map_ = map;
  bytes.data_ = static_cast<const uint8_t*>(map);
  return bytes;
}

ModelBytes ModelBytes::copy(const void* data, size_t size) {
  ModelBytes bytes;
  bytes.copy_ = AlignedBuffer<uint8_t>(size);
  if (size != 0) std::memcpy(bytes.copy_.data(), data, size);
  bytes.data_ = bytes.copy_.data();
  bytes.size_ = size;
  return bytes;
}

ModelBytes::ModelBytes(ModelBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      map_(std::exchange(other.map_, nullptr)),
      copy_(std::move(other.copy_)) {}

ModelBytes& ModelBytes::operator=(ModelBytes&& other) noexcept {
  if (this != &other) {
    if (map_ != nullptr) ::munmap(map_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    map_ = std::exchange(other.map_, nullptr);
    copy_ = std::move(other.copy_);
  }
  return *this;
}

ModelBytes::~ModelBytes() {
  if (map_ != nullptr) ::munmap(map_, size_);
}

}  // namespace rtmobile
