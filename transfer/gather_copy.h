// A list of device-to-device copies (any device memory this process can address, CUDA IPC
// mappings included) in one kernel launch. Every pointer and size is a multiple of 16 bytes; the
// op list itself lives in mapped pinned host memory until the kernel is done.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace tandem::transfer {

struct GatherOp {
  const void* src;
  void* dst;
  uint64_t bytes;
};

cudaError_t LaunchGatherCopy(const GatherOp* ops, int count, uint64_t largest_bytes,
                             cudaStream_t stream);

}  // namespace tandem::transfer
