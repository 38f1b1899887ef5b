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
#include <span>
#include <string>
#include <utility>

#include "tandem/status.h"

namespace tandem::transfer {

// CUDA devices visible to this process; 0 without CUDA.
int DeviceCount();

// Pinned (page-locked) host memory, as the staging buffers of device transfers.
StatusOr<void*> AllocPinned(size_t bytes);
void FreePinned(void* p);
// Pins (and unpins) host memory allocated elsewhere.
Status PinHost(void* p, size_t bytes);
void UnpinHost(void* p);

// Device memory on `device`, for tests and benchmarks.
StatusOr<void*> AllocDevice(int device, size_t bytes);
void FreeDevice(int device, void* p);
// Lets kernels on `from` read and write memory of `to` (NVLink or PCIe peer access); OK when
// it already could.
Status EnablePeerAccess(int from, int to);
// A synchronous copy between any two of host and device memory (unified addressing).
Status CopySync(void* dst, const void* src, size_t bytes);

// CUDA IPC: a device allocation exported to another process on this machine.
struct IpcExport {
  std::string handle;   // cudaIpcMemHandle_t's bytes
  uint64_t offset = 0;  // of the exported pointer within its allocation
  std::string pci_bus_id;  // of its device: device numbers differ between processes
};
StatusOr<IpcExport> ExportIpc(void* ptr, int device);
// Maps a peer's export into this process: the pointer the exporter had, and the local number of
// its device. CloseIpc unmaps it (with the pointer OpenIpc returned).
StatusOr<std::pair<void*, int>> OpenIpc(const IpcExport& exported);
void CloseIpc(void* ptr, uint64_t offset, int device);

// Asynchronous copies in order on one stream of `device`. Copy returns a ticket; Done(ticket) is
// true once that copy and every earlier one finished. Used from one thread at a time.
class DeviceCopier {
 public:
  static StatusOr<std::unique_ptr<DeviceCopier>> Create(int device);
  virtual ~DeviceCopier() = default;
  virtual StatusOr<uint64_t> Copy(void* dst, const void* src, size_t bytes) = 0;
  // Many copies in one call (cudaMemcpyBatchAsync): a list of blocks costs one launch, not one
  // per block.
  virtual StatusOr<uint64_t> CopyBatch(std::span<void* const> dst, std::span<const void* const> src,
                                       std::span<const size_t> bytes) = 0;
  // Device-to-device copies (CUDA IPC mappings included) in one kernel launch when every pointer
  // and size is a multiple of 16 bytes and there are at most kGatherOps of them; CopyBatch
  // otherwise.
  static constexpr size_t kGatherOps = 256;
  virtual StatusOr<uint64_t> Gather(std::span<void* const> dst, std::span<const void* const> src,
                                    std::span<const size_t> bytes) = 0;
  virtual StatusOr<bool> Done(uint64_t ticket) = 0;
};

}  // namespace tandem::transfer
