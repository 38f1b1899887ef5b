// What the transfer backends need of CUDA, behind a plain C++ interface so that `tandem_transfer`
// builds (and every host-memory backend runs) where CUDA is absent: pinned host buffers, device
// allocations for tests, and asynchronous copies on a stream of their own whose completion is
// polled, never waited for, by a progress thread.
//
// Without CUDA (TANDEM_CUDA off, or no device visible) every call returns an error and
// DeviceCount() is 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "tandem/status.h"

namespace tandem::transfer {

// CUDA devices visible to this process; 0 without CUDA.
int DeviceCount();

// Pinned (page-locked) host memory, as the staging buffers of device transfers.
StatusOr<void*> AllocPinned(size_t bytes);
void FreePinned(void* p);

// Device memory on `device`, for tests and benchmarks.
StatusOr<void*> AllocDevice(int device, size_t bytes);
void FreeDevice(int device, void* p);
// A synchronous copy between any two of host and device memory (unified addressing).
Status CopySync(void* dst, const void* src, size_t bytes);

// Asynchronous copies in order on one stream of `device`. Copy returns a ticket; Done(ticket) is
// true once that copy and every earlier one finished. Used from one thread at a time.
class DeviceCopier {
 public:
  static StatusOr<std::unique_ptr<DeviceCopier>> Create(int device);
  virtual ~DeviceCopier() = default;
  virtual StatusOr<uint64_t> Copy(void* dst, const void* src, size_t bytes) = 0;
  virtual StatusOr<bool> Done(uint64_t ticket) = 0;
};

}  // namespace tandem::transfer
