// Programmatic dependent launch (Hopper): a kernel launched with LaunchWithDependency may start
// while the kernel before it on the stream is still running, once every CTA of that kernel has
// called GridDependencyTrigger (or exited). Until GridDependencyWait returns it may only read what
// the kernel before it does not write (weights); the wait returns when that kernel has finished
// and its writes are visible. Every kernel launched this way calls GridDependencyWait in every
// CTA before it reads the previous kernel's output or writes anything, so the chain stays ordered
// as a plain stream would order it. Both calls are no-ops without a dependent launch and below
// sm_90.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace tandem::engine::cuda {

__device__ __forceinline__ void GridDependencyWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel (if launched with LaunchWithDependency) start its CTAs now.
__device__ __forceinline__ void GridDependencyTrigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// The start of a kernel launched with LaunchWithDependency that reads its inputs at once: wait
// for them, then let the next kernel's CTAs start (they wait in turn).
__device__ __forceinline__ void GridDependencyBegin() {
  GridDependencyWait();
  GridDependencyTrigger();
}

// kernel<<<grid, block, smem, stream>>>(args...) with the programmatic-serialization attribute;
// capturable in a CUDA graph (the edge becomes a programmatic dependency).
template <typename... Params, typename... Args>
cudaError_t LaunchWithDependency(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                                 cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace tandem::engine::cuda
