// RAII owners for CUDA runtime resources (device buffers, streams, events) and the conversion of
// cudaError_t into tandem::Status. Implementation header of the cuda backend: it includes
// <cuda_runtime.h>, so nothing under include/tandem may include it.
//
// Thread safety: the owners are move-only values; one object is used by one thread at a time.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string_view>
#include <utility>

#include "kvcache/host_store.h"
#include "tandem/status.h"

namespace tandem::engine::cuda {

// OK for cudaSuccess; otherwise Internal (ResourceExhausted for cudaErrorMemoryAllocation) with
// "`what`: <cuda error name>: <description>".
Status CudaStatus(cudaError_t error, std::string_view what);

// Checks a runtime call and returns its status from the enclosing function on failure.
#define TANDEM_CUDA_RETURN_IF_ERROR(expr)                                   \
  do {                                                                      \
    const cudaError_t tandem_cuda_error_ = (expr);                          \
    if (tandem_cuda_error_ != cudaSuccess) {                                \
      return ::tandem::engine::cuda::CudaStatus(tandem_cuda_error_, #expr); \
    }                                                                       \
  } while (0)

// Number of visible devices; 0 when the runtime finds no driver or no device.
int DeviceCount();

// A device allocation (cudaMalloc: 256-byte aligned). Empty after a move or when size is 0.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static StatusOr<DeviceBuffer> Create(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size() const { return bytes_; }

  // Grows to at least `bytes` (contents are lost when it reallocates).
  Status Reserve(size_t bytes);

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// A non-blocking stream (no implicit synchronisation with the legacy default stream).
class CudaStream {
 public:
  static StatusOr<CudaStream> Create();
  CudaStream() = default;
  ~CudaStream();
  CudaStream(CudaStream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  CudaStream& operator=(CudaStream&& other) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  cudaStream_t get() const { return stream_; }
  Status Synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

// An event for ordering and timing work between streams.
class CudaEvent {
 public:
  static StatusOr<CudaEvent> Create(bool timing = false);
  CudaEvent() = default;
  ~CudaEvent();
  CudaEvent(CudaEvent&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
  CudaEvent& operator=(CudaEvent&& other) noexcept;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  cudaEvent_t get() const { return event_; }
  Status Record(cudaStream_t stream) const;
  Status Synchronize() const;

 private:
  cudaEvent_t event_ = nullptr;
};

// An instantiated CUDA graph (cudaGraphExec_t), captured from work enqueued on a stream.
class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(CudaGraph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}
  CudaGraph& operator=(CudaGraph&& other) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Captures what `enqueue` puts on `stream` (thread-local capture mode) and instantiates it.
  // A failure of `enqueue` ends the capture and is returned.
  template <typename Enqueue>
  static StatusOr<CudaGraph> Capture(cudaStream_t stream, Enqueue&& enqueue);

  Status Launch(cudaStream_t stream) const;

 private:
  static Status Begin(cudaStream_t stream);
  static StatusOr<CudaGraph> End(cudaStream_t stream, const Status& enqueue_status);

  cudaGraphExec_t exec_ = nullptr;
};

template <typename Enqueue>
StatusOr<CudaGraph> CudaGraph::Capture(cudaStream_t stream, Enqueue&& enqueue) {
  if (Status begun = Begin(stream); !begun.ok()) return begun;
  const Status status = enqueue();
  return End(stream, status);
}

// Page-locked host memory (cudaHostAlloc, portable to every device): the host KV tier's memory on
// the cuda backend, so block copies to and from the device run at the link's speed.
class PinnedHostAllocator final : public kvcache::HostAllocator {
 public:
  StatusOr<void*> Allocate(size_t bytes) override;
  void Free(void* p, size_t bytes) override;
};

}  // namespace tandem::engine::cuda
