// device_copy.h with the CUDA runtime.
#include <cuda_runtime.h>

#include <deque>
#include <string>
#include <vector>

#include "transfer/device_copy.h"

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
  }

  StatusOr<uint64_t> Copy(void* dst, const void* src, size_t bytes) override {
    TANDEM_CUDA_RETURN(cudaSetDevice(device_));
    cudaEvent_t event;
    if (free_.empty()) {
      TANDEM_CUDA_RETURN(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    } else {
      event = free_.back();
      free_.pop_back();
    }
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_);
    if (e == cudaSuccess) e = cudaEventRecord(event, stream_);
    if (e != cudaSuccess) {
      free_.push_back(event);
      return CudaError("cudaMemcpyAsync", e);
    }
    pending_.emplace_back(++issued_, event);
    return issued_;
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
  const int device_;
  const cudaStream_t stream_;
  uint64_t issued_ = 0;
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

Status CopySync(void* dst, const void* src, size_t bytes) {
  TANDEM_CUDA_RETURN(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
  return OkStatus();
}

StatusOr<std::unique_ptr<DeviceCopier>> DeviceCopier::Create(int device) {
  TANDEM_CUDA_RETURN(cudaSetDevice(device));
  cudaStream_t stream;
  TANDEM_CUDA_RETURN(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return std::unique_ptr<DeviceCopier>(new CudaCopier(device, stream));
}

}  // namespace tandem::transfer
