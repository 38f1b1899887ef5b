// device_copy.h with the CUDA runtime.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "transfer/device_copy.h"
#include "transfer/gather_copy.h"

namespace tandem::transfer {
namespace {

Status CudaError(const char* call, cudaError_t e) {
  return UnavailableError(std::string(call) + ": " + cudaGetErrorString(e));
}

#define TANDEM_CUDA_RETURN(call)                          \
  do {                                                    \
    if (cudaError_t e_ = (call); e_ != cudaSuccess) {     \
      return CudaError(#call, e_);                        \
    }                                                     \
  } while (0)

class CudaCopier final : public DeviceCopier {
 public:
  CudaCopier(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  ~CudaCopier() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    for (auto& [ticket, event] : pending_) cudaEventDestroy(event);
    for (cudaEvent_t e : free_) cudaEventDestroy(e);
    cudaStreamDestroy(stream_);
    if (ring_ != nullptr) cudaFreeHost(ring_);
  }

  StatusOr<uint64_t> Copy(void* dst, const void* src, size_t bytes) override {
    TANDEM_CUDA_RETURN(cudaSetDevice(device_));
    TANDEM_CUDA_RETURN(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
    return Record();
  }

  StatusOr<uint64_t> CopyBatch(std::span<void* const> dst, std::span<const void* const> src,
                               std::span<const size_t> bytes) override {
    if (dst.empty()) return issued_;
    TANDEM_CUDA_RETURN(cudaSetDevice(device_));
    cudaMemcpyAttributes attr{};
    attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
    attr.srcLocHint = {cudaMemLocationTypeDevice, device_};
    attr.dstLocHint = {cudaMemLocationTypeDevice, device_};
    size_t first = 0;
    if (cudaMemcpyBatchAsync(dst.data(), src.data(), bytes.data(), dst.size(), &attr, &first, 1,
                             stream_) != cudaSuccess) {
      cudaGetLastError();  // the driver refused the batch: one copy at a time
      for (size_t i = 0; i + 1 < dst.size(); ++i) {
        TANDEM_CUDA_RETURN(cudaMemcpyAsync(dst[i], src[i], bytes[i], cudaMemcpyDefault, stream_));
      }
      return Copy(dst.back(), src.back(), bytes.back());
    }
    return Record();
  }

  StatusOr<uint64_t> Gather(std::span<void* const> dst, std::span<const void* const> src,
                            std::span<const size_t> bytes) override {
    const auto aligned = [](uint64_t v) { return v % 16 == 0; };
    bool gather = !dst.empty() && dst.size() <= kGatherOps;
    uint64_t largest = 0;
    for (size_t i = 0; gather && i < dst.size(); ++i) {
      gather = aligned(reinterpret_cast<uint64_t>(dst[i])) &&
               aligned(reinterpret_cast<uint64_t>(src[i])) && aligned(bytes[i]);
      largest = std::max<uint64_t>(largest, bytes[i]);
    }
    if (gather && ring_ == nullptr) {
      void* p = nullptr;
      if (cudaHostAlloc(&p, kRing * kGatherOps * sizeof(GatherOp), cudaHostAllocMapped) !=
          cudaSuccess) {
        cudaGetLastError();
        gather = false;
      } else {
        ring_ = static_cast<GatherOp*>(p);
      }
    }
    // The slot's op list must be done with: its last kernel finished.
    if (gather) {
      StatusOr<bool> free = Done(ring_tickets_[next_slot_]);
      gather = free.ok() && *free;
    }
    if (!gather) return CopyBatch(dst, src, bytes);
    TANDEM_CUDA_RETURN(cudaSetDevice(device_));
    GatherOp* ops = ring_ + next_slot_ * kGatherOps;
    for (size_t i = 0; i < dst.size(); ++i) ops[i] = {src[i], dst[i], bytes[i]};
    TANDEM_CUDA_RETURN(LaunchGatherCopy(ops, static_cast<int>(dst.size()), largest, stream_));
    StatusOr<uint64_t> ticket = Record();
    if (ticket.ok()) ring_tickets_[next_slot_] = *ticket;
    next_slot_ = (next_slot_ + 1) % kRing;
    return ticket;
  }

  StatusOr<bool> Done(uint64_t ticket) override {
    while (!pending_.empty() && pending_.front().first <= ticket) {
      const cudaError_t e = cudaEventQuery(pending_.front().second);
      if (e == cudaErrorNotReady) return false;
      if (e != cudaSuccess) return CudaError("cudaEventQuery", e);
      free_.push_back(pending_.front().second);
      pending_.pop_front();
    }
    return true;
  }

 private:
  // An event after the copies issued so far: their ticket.
  StatusOr<uint64_t> Record() {
    cudaEvent_t event;
    if (free_.empty()) {
      TANDEM_CUDA_RETURN(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    } else {
      event = free_.back();
      free_.pop_back();
    }
    if (cudaError_t e = cudaEventRecord(event, stream_); e != cudaSuccess) {
      free_.push_back(event);
      return CudaError("cudaEventRecord", e);
    }
    pending_.emplace_back(++issued_, event);
    return issued_;
  }

  const int device_;
  const cudaStream_t stream_;
  uint64_t issued_ = 0;
  // Op lists of Gather in mapped pinned memory, each slot reused once its kernel is done.
  static constexpr size_t kRing = 8;
  GatherOp* ring_ = nullptr;
  uint64_t ring_tickets_[kRing] = {};
  size_t next_slot_ = 0;
  std::deque<std::pair<uint64_t, cudaEvent_t>> pending_;
  std::vector<cudaEvent_t> free_;
};

}  // namespace

int DeviceCount() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

StatusOr<void*> AllocPinned(size_t bytes) {
  void* p = nullptr;
  TANDEM_CUDA_RETURN(cudaHostAlloc(&p, bytes, cudaHostAllocPortable));
  return p;
}

void FreePinned(void* p) {
  if (p != nullptr) cudaFreeHost(p);
}

Status PinHost(void* p, size_t bytes) {
  TANDEM_CUDA_RETURN(cudaHostRegister(p, bytes, cudaHostRegisterPortable));
  return OkStatus();
}

void UnpinHost(void* p) { cudaHostUnregister(p); }

StatusOr<void*> AllocDevice(int device, size_t bytes) {
  TANDEM_CUDA_RETURN(cudaSetDevice(device));
  void* p = nullptr;
  TANDEM_CUDA_RETURN(cudaMalloc(&p, bytes));
  return p;
}

void FreeDevice(int device, void* p) {
  if (p == nullptr) return;
  cudaSetDevice(device);
  cudaFree(p);
}

Status EnablePeerAccess(int from, int to) {
  if (from == to) return OkStatus();
  TANDEM_CUDA_RETURN(cudaSetDevice(from));
  const cudaError_t e = cudaDeviceEnablePeerAccess(to, 0);
  if (e == cudaErrorPeerAccessAlreadyEnabled) {
    cudaGetLastError();
    return OkStatus();
  }
  TANDEM_CUDA_RETURN(e);
  return OkStatus();
}

Status CopySync(void* dst, const void* src, size_t bytes) {
  TANDEM_CUDA_RETURN(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
  TANDEM_CUDA_RETURN(cudaDeviceSynchronize());  // device to device returns before it is done
  return OkStatus();
}

StatusOr<IpcExport> ExportIpc(void* ptr, int device) {
  TANDEM_CUDA_RETURN(cudaSetDevice(device));
  // The handle names the whole allocation; the offset of `ptr` in it comes from the driver,
  // reached through the runtime so that nothing links libcuda (absent where there is no GPU).
  using GetRange = int (*)(unsigned long long*, size_t*, unsigned long long);
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found;
  TANDEM_CUDA_RETURN(cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &fn, 12000,
                                                      cudaEnableDefault, &found));
  if (fn == nullptr || found != cudaDriverEntryPointSuccess) {
    return UnavailableError("cuda_ipc: cuMemGetAddressRange is not available");
  }
  unsigned long long base = 0;
  size_t size = 0;
  if (reinterpret_cast<GetRange>(fn)(&base, &size, reinterpret_cast<unsigned long long>(ptr)) !=
      0) {
    return InvalidArgumentError("cuda_ipc: not device memory of this process");
  }
  cudaIpcMemHandle_t handle;
  TANDEM_CUDA_RETURN(cudaIpcGetMemHandle(&handle, reinterpret_cast<void*>(base)));
  char bus[32] = {};
  TANDEM_CUDA_RETURN(cudaDeviceGetPCIBusId(bus, sizeof bus, device));
  return IpcExport{std::string(reinterpret_cast<const char*>(&handle), sizeof handle),
                   reinterpret_cast<unsigned long long>(ptr) - base, bus};
}

StatusOr<std::pair<void*, int>> OpenIpc(const IpcExport& exported) {
  cudaIpcMemHandle_t handle;
  if (exported.handle.size() != sizeof handle) {
    return InvalidArgumentError("cuda_ipc: a malformed IPC handle");
  }
  std::memcpy(&handle, exported.handle.data(), sizeof handle);
  int device = -1;
  TANDEM_CUDA_RETURN(cudaDeviceGetByPCIBusId(&device, exported.pci_bus_id.c_str()));
  TANDEM_CUDA_RETURN(cudaSetDevice(device));
  void* base = nullptr;
  TANDEM_CUDA_RETURN(cudaIpcOpenMemHandle(&base, handle, cudaIpcMemLazyEnablePeerAccess));
  return std::pair<void*, int>(static_cast<char*>(base) + exported.offset, device);
}

void CloseIpc(void* ptr, uint64_t offset, int device) {
  cudaSetDevice(device);
  cudaIpcCloseMemHandle(static_cast<char*>(ptr) - offset);
}

StatusOr<std::unique_ptr<DeviceCopier>> DeviceCopier::Create(int device) {
  TANDEM_CUDA_RETURN(cudaSetDevice(device));
  cudaStream_t stream;
  TANDEM_CUDA_RETURN(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return std::unique_ptr<DeviceCopier>(new CudaCopier(device, stream));
}

}  // namespace tandem::transfer
