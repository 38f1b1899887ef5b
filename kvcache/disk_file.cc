// DiskIo on an O_DIRECT file: io_uring (liburing) when the build has it (TANDEM_HAVE_URING; every
// Debian build does, setup.sh installs it), else pread/pwrite one operation at a time (machines
// whose image lacks liburing's headers).
#include <fcntl.h>
#include <unistd.h>
#if TANDEM_HAVE_URING
#include <liburing.h>
#endif

#include <cerrno>
#include <cstring>
#include <string>

#include "kvcache/disk_io.h"

namespace tandem::kvcache {
namespace {

std::string Errno(int e) { return std::strerror(e); }

#if TANDEM_HAVE_URING

class UringFile final : public DiskIo {
 public:
  UringFile(int fd, int queue_depth) : fd_(fd), depth_(queue_depth) {}
  ~UringFile() override {
    if (ring_ready_) io_uring_queue_exit(&ring_);
    close(fd_);
  }

  Status Init() {
    const int r = io_uring_queue_init(static_cast<unsigned>(depth_), &ring_, 0);
    if (r < 0) return UnavailableError("disk kv tier: io_uring_queue_init: " + Errno(-r));
    ring_ready_ = true;
    return OkStatus();
  }

  std::vector<int64_t> Read(std::span<const Op> ops) override { return Run(ops, false); }
  std::vector<int64_t> Write(std::span<const Op> ops) override { return Run(ops, true); }

 private:
  // Up to depth_ operations in flight; a new one is queued as each completes.
  std::vector<int64_t> Run(std::span<const Op> ops, bool write) {
    std::vector<int64_t> results(ops.size(), -EIO);
    size_t next = 0, done = 0, in_flight = 0;
    while (done < ops.size()) {
      while (next < ops.size() && in_flight < static_cast<size_t>(depth_)) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (sqe == nullptr) break;
        const Op& op = ops[next];
        if (write) {
          io_uring_prep_write(sqe, fd_, op.buffer, static_cast<unsigned>(op.bytes), op.offset);
        } else {
          io_uring_prep_read(sqe, fd_, op.buffer, static_cast<unsigned>(op.bytes), op.offset);
        }
        io_uring_sqe_set_data64(sqe, next);
        ++next;
        ++in_flight;
      }
      const int submitted = io_uring_submit(&ring_);
      if (submitted < 0 && in_flight == 0) break;  // nothing queued can complete
      io_uring_cqe* cqe = nullptr;
      const int r = io_uring_wait_cqe(&ring_, &cqe);
      if (r < 0) {
        if (r == -EINTR) continue;
        break;  // the ring is broken: what has not completed reports -EIO
      }
      const uint64_t i = io_uring_cqe_get_data64(cqe);
      const int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      results[i] = res < 0 ? res : (static_cast<size_t>(res) == ops[i].bytes ? res : -EIO);
      ++done;
      --in_flight;
    }
    return results;
  }

  const int fd_;
  const int depth_;
  io_uring ring_{};
  bool ring_ready_ = false;
};

#else

class UringFile final : public DiskIo {  // the pread/pwrite stand-in
 public:
  UringFile(int fd, int) : fd_(fd) {}
  ~UringFile() override { close(fd_); }
  Status Init() { return OkStatus(); }
  std::vector<int64_t> Read(std::span<const Op> ops) override { return Run(ops, false); }
  std::vector<int64_t> Write(std::span<const Op> ops) override { return Run(ops, true); }

 private:
  std::vector<int64_t> Run(std::span<const Op> ops, bool write) {
    std::vector<int64_t> results;
    for (const Op& op : ops) {
      const ssize_t n = write ? pwrite(fd_, op.buffer, op.bytes, static_cast<off_t>(op.offset))
                              : pread(fd_, op.buffer, op.bytes, static_cast<off_t>(op.offset));
      results.push_back(n < 0 ? -errno : (static_cast<size_t>(n) == op.bytes ? n : -EIO));
    }
    return results;
  }
  const int fd_;
};

#endif

}  // namespace

StatusOr<std::unique_ptr<DiskIo>> OpenDiskFile(const std::string& path, uint64_t bytes,
                                                int queue_depth) {
  if (queue_depth <= 0) return InvalidArgumentError("disk kv tier: queue_depth must be positive");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return UnavailableError("disk kv tier: open " + path + " with O_DIRECT: " + Errno(errno));
  }
  if (fallocate(fd, 0, 0, static_cast<off_t>(bytes)) != 0) {
    const int e = errno;
    close(fd);
    return UnavailableError("disk kv tier: fallocate " + std::to_string(bytes) + " bytes for " +
                            path + ": " + Errno(e));
  }
  auto file = std::make_unique<UringFile>(fd, queue_depth);
  if (Status s = file->Init(); !s.ok()) return s;
  return std::unique_ptr<DiskIo>(std::move(file));
}

}  // namespace tandem::kvcache
