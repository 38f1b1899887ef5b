// SiLU as every kernel of the backend computes it (the fused and the separate SiLU·up must give
// the same bits).
#pragma once

namespace tandem::engine::cuda {

__device__ __forceinline__ float Silu(float g) { return g / (1.0f + expf(-g)); }

}  // namespace tandem::engine::cuda
