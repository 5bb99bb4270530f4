#include "format/model_bytes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "rtmobile/rtmobile.hpp"

namespace rtmobile {
namespace {

const char* file_type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

// Closes the descriptor on every path out of read_file.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

ModelBytes ModelBytes::read_file(const std::string& path, uint64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It has
  // no effect on regular files, the only kind accepted below.
  const FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0)
    throw Error(ErrorCode::kIo, "cannot open model file '" + path + "': " + std::strerror(errno));
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0)
    throw Error(ErrorCode::kIo, "cannot stat model file '" + path + "': " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw Error(ErrorCode::kIo, "model path '" + path + "' is " + file_type_name(st.st_mode) +
                                    ", not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes)
    throw Error(ErrorCode::kResourceLimit,
                "model file '" + path + "' is " + std::to_string(size) +
                    " bytes, more than the session's memory limit of " +
                    std::to_string(max_bytes >> 20) + " MiB; raise memory_limit_mb to load it");
  ModelBytes bytes;
  bytes.buffer_ = AlignedBuffer<uint8_t>(static_cast<size_t>(size));
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd.get(), bytes.buffer_.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw Error(ErrorCode::kIo, "cannot read model file '" + path + "': " +
                                      std::strerror(errno));
    if (n == 0)
      throw Error(ErrorCode::kIo, "model file '" + path + "' shrank while it was being read (" +
                                      std::to_string(done) + " of " + std::to_string(size) +
                                      " bytes)");
    done += static_cast<size_t>(n);
  }
  return bytes;
}

ModelBytes ModelBytes::copy(const void* data, size_t size) {
  ModelBytes bytes;
  bytes.buffer_ = AlignedBuffer<uint8_t>(size);
  if (size != 0) std::memcpy(bytes.buffer_.data(), data, size);
  return bytes;
}

}  // namespace rtmobile
