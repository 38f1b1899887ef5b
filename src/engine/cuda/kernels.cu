// Element-wise and per-row kernels of the cuda backend (see kernels.h for the contracts).
#include <cmath>

#include "engine/cuda/block_reduce.cuh"
#include "engine/cuda/kernels.h"

namespace tandem::engine::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void EmbeddingKernel(EmbeddingParams p) {
  const int r = blockIdx.x;
  const bf16* src = p.table + static_cast<int64_t>(p.tokens[r]) * p.hidden;
  float* dst = p.x + static_cast<int64_t>(r) * p.hidden;
  for (int i = threadIdx.x; i < p.hidden; i += blockDim.x) dst[i] = __bfloat162float(src[i]);
}

__global__ void AddRmsNormKernel(AddRmsNormParams p) {
  const int r = blockIdx.x;
  const int64_t s = p.gather != nullptr ? p.gather[r] : r;
  float* x = p.x + s * p.hidden;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < p.hidden; i += blockDim.x) {
    float v = x[i];
    if (p.delta != nullptr) {
      v += __bfloat162float(p.delta[s * p.hidden + i]);
      x[i] = v;
    }
    sum += v * v;
  }
  sum = BlockSum(sum);
  const float inv = 1.0f / sqrtf(sum / static_cast<float>(p.hidden) + p.eps);
  bf16* out = p.out + static_cast<int64_t>(r) * p.hidden;
  // Each thread reads back only the elements it wrote above.
  for (int i = threadIdx.x; i < p.hidden; i += blockDim.x) {
    out[i] = __float2bfloat16(p.weight[i] * (x[i] * inv));
  }
}

__global__ void AddBiasKernel(AddBiasParams p) {
  const int r = blockIdx.x;
  bf16* row = p.data + static_cast<int64_t>(r) * p.cols;
  for (int i = threadIdx.x; i < p.cols; i += blockDim.x) {
    row[i] = __float2bfloat16(__bfloat162float(row[i]) + p.bias[i]);
  }
}

__global__ void RopeKvWriteKernel(RopeKvWriteParams p) {
  const int r = blockIdx.x;
  const int pos = p.positions[r];
  const float* inv_freq = p.freqs + p.freq_offset[r];
  const int half = p.rotary_dim / 2;
  const int hd = p.head_dim;
  const int kv_dim = p.kv_heads * hd;
  const int q_dim = p.heads * hd;
  bf16* row = p.qkv + static_cast<int64_t>(r) * p.qkv_stride;
  const int slot = pos % p.block_size;
  bf16* block = p.kv_cache + static_cast<int64_t>(p.row_block[r]) * p.block_elements;
  bf16* k_dst = block + p.k_offset + static_cast<int64_t>(slot) * kv_dim;
  bf16* v_dst = block + p.v_offset + static_cast<int64_t>(slot) * kv_dim;
  const float fpos = static_cast<float>(pos);

  // Rotary pairs (i, i + half) of every q and k head.
  for (int w = threadIdx.x; w < (p.heads + p.kv_heads) * half; w += blockDim.x) {
    const int h = w / half;  // q heads first, then k heads (contiguous in the row)
    const int i = w % half;
    bf16* x = row + h * hd;
    // HF: angle = inv_freq * pos in fp32, cos/sin of it, times the attention factor.
    const float angle = inv_freq[i] * fpos;
    const float c = cosf(angle) * p.attention_scaling;
    const float sn = sinf(angle) * p.attention_scaling;
    const float a = __bfloat162float(x[i]);
    const float b = __bfloat162float(x[i + half]);
    const bf16 ra = __float2bfloat16(a * c - b * sn);
    const bf16 rb = __float2bfloat16(b * c + a * sn);
    x[i] = ra;
    x[i + half] = rb;
    if (h >= p.heads) {
      const int kh = h - p.heads;
      k_dst[kh * hd + i] = ra;
      k_dst[kh * hd + i + half] = rb;
    }
  }
  // K's dimensions past rotary_dim (partial rotary), and all of V.
  for (int e = threadIdx.x; e < kv_dim; e += blockDim.x) {
    if (e % hd >= p.rotary_dim) k_dst[e] = row[q_dim + e];
    v_dst[e] = row[q_dim + kv_dim + e];
  }
}

__global__ void SiluMulKernel(SiluMulParams p) {
  const int r = blockIdx.x;
  const bf16* g = p.gate_up + static_cast<int64_t>(r) * 2 * p.inter;
  const bf16* u = g + p.inter;
  bf16* out = p.out + static_cast<int64_t>(r) * p.inter;
  for (int i = threadIdx.x; i < p.inter; i += blockDim.x) {
    const float gv = __bfloat162float(g[i]);
    out[i] = __float2bfloat16(gv / (1.0f + expf(-gv)) * __bfloat162float(u[i]));
  }
}

}  // namespace

cudaError_t LaunchEmbedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  EmbeddingKernel<<<p.rows, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchAddRmsNorm(const AddRmsNormParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  AddRmsNormKernel<<<p.rows, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchAddBias(const AddBiasParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  AddBiasKernel<<<p.rows, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchRopeKvWrite(const RopeKvWriteParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.rotary_dim % 2 != 0 || p.rotary_dim > p.head_dim) return cudaErrorInvalidValue;
  RopeKvWriteKernel<<<p.rows, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchSiluMul(const SiluMulParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  SiluMulKernel<<<p.rows, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace tandem::engine::cuda
