// The disk tier's I/O: one preallocated file, read and written in batches of aligned operations.
// The seam exists so that tests can wrap the real file (OpenDiskFile) and inject failures: a write
// that fails, a read that fails, a full disk.
//
// Thread safety: none; the disk store serialises its calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tandem/status.h"

namespace tandem::kvcache {

class DiskIo {
 public:
  struct Op {
    uint64_t offset = 0;  // multiple of 4 KiB
    void* buffer = nullptr;  // 4 KiB-aligned
    size_t bytes = 0;        // multiple of 4 KiB
  };
  virtual ~DiskIo() = default;
  // Runs every op and returns each one's result: its byte count, or -errno (a short transfer is
  // reported as -EIO).
  virtual std::vector<int64_t> Read(std::span<const Op> ops) = 0;
  virtual std::vector<int64_t> Write(std::span<const Op> ops) = 0;
};

// `path` opened with O_DIRECT (created when absent, truncated: nothing is kept) and preallocated
// to `bytes` with fallocate; operations go through one io_uring of `queue_depth` entries, up to
// that many of a batch in flight together (pread/pwrite in a build without liburing). Unavailable
// when the file system refuses O_DIRECT or the space.
StatusOr<std::unique_ptr<DiskIo>> OpenDiskFile(const std::string& path, uint64_t bytes,
                                                int queue_depth);

}  // namespace tandem::kvcache
