// Paged attention, first version: one CTA per (row, query head), keys in tiles of kTile (one key
// per thread for the scores, one output dimension per thread for the values), online softmax in
// fp32. Correct for prefill chunks and decode alike; the fast versions (tensor-core prefill,
// split-KV decode) replace it behind the same params struct.
#include <cmath>

#include "engine/cuda/block_reduce.cuh"
#include "engine/cuda/kernels.h"
#include "engine/cuda/pdl.cuh"

namespace tandem::engine::cuda {
namespace {

constexpr int kTile = 128;  // keys per tile = threads per CTA

__global__ void __launch_bounds__(kTile) PagedAttentionKernel(PagedAttentionParams p) {
  GridDependencyBegin();
  extern __shared__ float smem[];
  float* q = smem;                 // [head_dim]
  float* acc = q + p.head_dim;     // [head_dim]
  float* prob = acc + p.head_dim;  // [kTile]

  const int r = blockIdx.x / p.heads;
  const int h = blockIdx.x % p.heads;
  const int kvh = h / (p.heads / p.kv_heads);
  const int hd = p.head_dim;
  const int pos = p.positions[r];
  const int first = p.window > 0 ? max(0, pos - p.window + 1) : 0;
  const int32_t* table = p.block_tables + p.table_offset[r];
  const int64_t token_elements = static_cast<int64_t>(p.kv_heads) * hd;

  const bf16* q_src = p.q + static_cast<int64_t>(r) * p.q_stride + h * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    q[d] = __bfloat162float(q_src[d]);
    acc[d] = 0.0f;
  }
  __syncthreads();

  auto key_row = [&](int j, int64_t plane_offset) {
    const int64_t block = table[j / p.block_size];
    return p.kv_cache + block * p.block_elements + plane_offset +
           static_cast<int64_t>(j % p.block_size) * token_elements + kvh * hd;
  };

  float m = -INFINITY;  // running max (identical in every thread)
  float l = 0.0f;       // running sum of exp(score - m)
  for (int t0 = first; t0 <= pos; t0 += kTile) {
    const int j = t0 + threadIdx.x;
    float s = -INFINITY;
    if (j <= pos) {
      const bf16* k = key_row(j, p.k_offset);
      float dot = 0.0f;
      for (int d = 0; d < hd; ++d) dot += q[d] * __bfloat162float(k[d]);
      s = dot * p.scale;
    }
    const float m_new = fmaxf(m, BlockMax(s));
    const float e = j <= pos ? expf(s - m_new) : 0.0f;
    prob[threadIdx.x] = e;
    const float tile_sum = BlockSum(e);        // its barriers also publish prob[]
    const float correction = expf(m - m_new);  // 0 on the first tile (m = -inf)
    l = l * correction + tile_sum;
    const int n = min(kTile, pos - t0 + 1);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
      float a = acc[d] * correction;
      for (int jj = 0; jj < n; ++jj) {
        a += prob[jj] * __bfloat162float(key_row(t0 + jj, p.v_offset)[d]);
      }
      acc[d] = a;
    }
    m = m_new;
    __syncthreads();  // prob[] is rewritten by the next tile
  }

  bf16* out = p.out + static_cast<int64_t>(r) * p.heads * hd + h * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) out[d] = __float2bfloat16(acc[d] / l);
}

}  // namespace

cudaError_t LaunchPagedAttention(const PagedAttentionParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.head_dim <= 0 || p.head_dim > kMaxHeadDim || p.kv_heads <= 0 || p.heads % p.kv_heads != 0) {
    return cudaErrorInvalidValue;
  }
  const size_t smem = (2 * static_cast<size_t>(p.head_dim) + kTile) * sizeof(float);
  return LaunchWithDependency(PagedAttentionKernel, dim3(p.rows * p.heads), dim3(kTile), smem,
                              stream, p);
}

}  // namespace tandem::engine::cuda
