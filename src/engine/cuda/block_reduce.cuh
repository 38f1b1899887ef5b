// Block-wide reductions for kernels whose blockDim.x is a multiple of 32 (at most 1024). Every
// thread of the block must call them; every thread gets the result.
#pragma once

#include <cuda_runtime.h>

namespace tandem::engine::cuda {

template <typename Op>
__device__ __forceinline__ float WarpReduce(float v, Op op) {
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

template <typename Op>
__device__ __forceinline__ float BlockReduce(float v, Op op) {
  __shared__ float partial[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int warps = blockDim.x / 32;
  v = WarpReduce(v, op);
  __syncthreads();  // partial[] may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = partial[0];
  for (int w = 1; w < warps; ++w) v = op(v, partial[w]);
  return v;
}

__device__ __forceinline__ float BlockSum(float v) {
  return BlockReduce(v, [](float a, float b) { return a + b; });
}

__device__ __forceinline__ float BlockMax(float v) {
  return BlockReduce(v, [](float a, float b) { return fmaxf(a, b); });
}

}  // namespace tandem::engine::cuda
