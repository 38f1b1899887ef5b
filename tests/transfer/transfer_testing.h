// What the transfer tests and the peer process share: a deterministic byte pattern, a buffer in
// host or device memory.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tandem/transfer.h"
#include "transfer/device_copy.h"
#include "transfer/wire.h"

namespace tandem::transfer::testing {

using Bytes = std::vector<std::byte>;

inline Bytes Pattern(size_t n, uint64_t seed) {
  Bytes b(n);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(b.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return b;
}

// A million ops of 64 bytes over `bytes`, the remote side in reverse order so that no backend
// can join neighbours: a transfer long enough to be caught in flight.
inline std::vector<TransferOp> SlowOps(size_t bytes) {
  std::vector<TransferOp> ops;
  for (size_t at = 0; at + 64 <= bytes; at += 64) {
    ops.push_back({.local_offset = at, .remote_offset = bytes - 64 - at, .bytes = 64});
  }
  return ops;
}

// A region's memory: host bytes, or device memory on `device` with its contents copied in and
// out through CopySync.
class Buffer {
 public:
  Buffer(MemoryKind kind, Bytes contents, int device = 0)
      : kind_(kind), device_index_(device), host_(std::move(contents)) {
    if (kind_ == MemoryKind::kDevice) {
      auto p = AllocDevice(device_index_, host_.size());
      if (p.ok() && CopySync(*p, host_.data(), host_.size()).ok()) device_ = *p;
    }
  }
  ~Buffer() { FreeDevice(device_index_, device_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  bool ok() const { return kind_ == MemoryKind::kHost || device_ != nullptr; }
  MemoryRegion region() {
    if (kind_ == MemoryKind::kHost) return {host_.data(), host_.size(), kind_, -1};
    return {device_, host_.size(), kind_, device_index_};
  }
  size_t size() const { return host_.size(); }
  // The current contents.
  Bytes Contents() {
    if (kind_ == MemoryKind::kDevice) {
      Bytes out(host_.size());
      if (!CopySync(out.data(), device_, out.size()).ok()) return {};
      return out;
    }
    return host_;
  }

 private:
  MemoryKind kind_;
  int device_index_;
  Bytes host_;
  void* device_ = nullptr;
};

}  // namespace tandem::transfer::testing
