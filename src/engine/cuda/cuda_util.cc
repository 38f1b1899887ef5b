#include "engine/cuda/cuda_util.h"

#include <string>

#include "common/status_macros.h"

namespace tandem::engine::cuda {

Status CudaStatus(cudaError_t error, std::string_view what) {
  if (error == cudaSuccess) return OkStatus();
  std::string message =
      std::string(what) + ": " + cudaGetErrorName(error) + ": " + cudaGetErrorString(error);
  if (error == cudaErrorMemoryAllocation) return ResourceExhaustedError(std::move(message));
  return InternalError(std::move(message));
}

int DeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // Clear the sticky "no driver" error for later callers.
    return 0;
  }
  return count;
}

StatusOr<DeviceBuffer> DeviceBuffer::Create(size_t bytes) {
  DeviceBuffer buffer;
  TANDEM_RETURN_IF_ERROR(buffer.Reserve(bytes));
  return buffer;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

Status DeviceBuffer::Reserve(size_t bytes) {
  if (bytes <= bytes_) return OkStatus();
  if (data_ != nullptr) {
    // The stream may still read the old buffer: free it only after the device is idle.
    TANDEM_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    TANDEM_CUDA_RETURN_IF_ERROR(cudaFree(data_));
    data_ = nullptr;
    bytes_ = 0;
  }
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(&data_, bytes));
  bytes_ = bytes;
  return OkStatus();
}

StatusOr<CudaStream> CudaStream::Create() {
  CudaStream stream;
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream.stream_, cudaStreamNonBlocking));
  return stream;
}

CudaStream::~CudaStream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

CudaStream& CudaStream::operator=(CudaStream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

Status CudaStream::Synchronize() const {
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return OkStatus();
}

StatusOr<CudaEvent> CudaEvent::Create(bool timing) {
  CudaEvent event;
  TANDEM_CUDA_RETURN_IF_ERROR(
      cudaEventCreateWithFlags(&event.event_, timing ? cudaEventDefault : cudaEventDisableTiming));
  return event;
}

CudaEvent::~CudaEvent() {
  if (event_ != nullptr) cudaEventDestroy(event_);
}

CudaEvent& CudaEvent::operator=(CudaEvent&& other) noexcept {
  if (this != &other) {
    if (event_ != nullptr) cudaEventDestroy(event_);
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

Status CudaEvent::Record(cudaStream_t stream) const {
  TANDEM_CUDA_RETURN_IF_ERROR(cudaEventRecord(event_, stream));
  return OkStatus();
}

Status CudaEvent::Synchronize() const {
  TANDEM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(event_));
  return OkStatus();
}

CudaGraph::~CudaGraph() {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
}

CudaGraph& CudaGraph::operator=(CudaGraph&& other) noexcept {
  if (this != &other) {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

Status CudaGraph::Begin(cudaStream_t stream) {
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  return OkStatus();
}

StatusOr<CudaGraph> CudaGraph::End(cudaStream_t stream, const Status& enqueue_status) {
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (!enqueue_status.ok()) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    (void)cudaGetLastError();  // a launch refused during capture leaves a sticky-free error
    return enqueue_status;
  }
  TANDEM_CUDA_RETURN_IF_ERROR(end);
  CudaGraph out;
  const cudaError_t inst = cudaGraphInstantiate(&out.exec_, graph, 0);
  cudaGraphDestroy(graph);
  TANDEM_CUDA_RETURN_IF_ERROR(inst);
  return out;
}

Status CudaGraph::Launch(cudaStream_t stream) const {
  TANDEM_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec_, stream));
  return OkStatus();
}

StatusOr<void*> PinnedHostAllocator::Allocate(size_t bytes) {
  void* p = nullptr;
  TANDEM_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&p, bytes, cudaHostAllocPortable));
  return p;
}

void PinnedHostAllocator::Free(void* p, size_t) {
  if (p != nullptr) cudaFreeHost(p);
}

}  // namespace tandem::engine::cuda
