// Element-wise and per-row kernels of the cuda backend (see kernels.h for the contracts).
#include <algorithm>
#include <cmath>

#include "engine/cuda/block_reduce.cuh"
#include "engine/cuda/kernels.h"
#include "engine/cuda/pdl.cuh"
#include "engine/cuda/silu.cuh"

namespace tandem::engine::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void EmbeddingKernel(EmbeddingParams p) {
  const int r = blockIdx.x;
  const bf16* src = p.table + static_cast<int64_t>(p.tokens[r]) * p.hidden;
  float* dst = p.x + static_cast<int64_t>(r) * p.hidden;
  for (int i = threadIdx.x; i < p.hidden; i += blockDim.x) dst[i] = __bfloat162float(src[i]);
}

// One CTA per row; with hidden % 4 == 0 every access is 16 bytes of x (8 of delta and out).
template <bool kVec4>
__global__ void AddRmsNormKernel(AddRmsNormParams p) {
  GridDependencyBegin();
  const int r = blockIdx.x;
  const int64_t s = p.gather != nullptr ? p.gather[r] : r;
  float* x = p.x + s * p.hidden;
  const bf16* delta = p.delta != nullptr ? p.delta + s * p.hidden : nullptr;
  bf16* out = p.out + static_cast<int64_t>(r) * p.hidden;
  float sum = 0.0f;
  if constexpr (kVec4) {
    for (int i = threadIdx.x * 4; i < p.hidden; i += blockDim.x * 4) {
      float4 v = *reinterpret_cast<const float4*>(x + i);
      if (delta != nullptr) {
        const uint2 d = *reinterpret_cast<const uint2*>(delta + i);
        v.x += __uint_as_float(d.x << 16);
        v.y += __uint_as_float(d.x & 0xffff0000u);
        v.z += __uint_as_float(d.y << 16);
        v.w += __uint_as_float(d.y & 0xffff0000u);
        *reinterpret_cast<float4*>(x + i) = v;
      }
      sum += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int i = threadIdx.x; i < p.hidden; i += blockDim.x) {
      float v = x[i];
      if (delta != nullptr) {
        v += __bfloat162float(delta[i]);
        x[i] = v;
      }
      sum += v * v;
    }
  }
  sum = BlockSum(sum);
  const float inv = 1.0f / sqrtf(sum / static_cast<float>(p.hidden) + p.eps);
  // Each thread reads back only the elements it wrote above.
  if constexpr (kVec4) {
    for (int i = threadIdx.x * 4; i < p.hidden; i += blockDim.x * 4) {
      const float4 v = *reinterpret_cast<const float4*>(x + i);
      const float4 w = *reinterpret_cast<const float4*>(p.weight + i);
      __nv_bfloat162 lo = __floats2bfloat162_rn(w.x * (v.x * inv), w.y * (v.y * inv));
      __nv_bfloat162 hi = __floats2bfloat162_rn(w.z * (v.z * inv), w.w * (v.w * inv));
      uint2 packed;
      packed.x = *reinterpret_cast<uint32_t*>(&lo);
      packed.y = *reinterpret_cast<uint32_t*>(&hi);
      *reinterpret_cast<uint2*>(out + i) = packed;
    }
  } else {
    for (int i = threadIdx.x; i < p.hidden; i += blockDim.x) {
      out[i] = __float2bfloat16(p.weight[i] * (x[i] * inv));
    }
  }
}

__global__ void AddBiasKernel(AddBiasParams p) {
  GridDependencyBegin();
  const int r = blockIdx.x;
  bf16* row = p.data + static_cast<int64_t>(r) * p.cols;
  for (int i = threadIdx.x; i < p.cols; i += blockDim.x) {
    row[i] = __float2bfloat16(__bfloat162float(row[i]) + p.bias[i]);
  }
}

// Grid (rows, chunks): the row's work items are its rotary pairs (every q and k head) followed by
// the plain copies into the KV slot (K past rotary_dim, all of V); each thread takes one.
__global__ void RopeKvWriteKernel(RopeKvWriteParams p) {
  GridDependencyBegin();
  const int r = blockIdx.x;
  const int pos = p.positions[r];
  const int half = p.rotary_dim / 2;
  const int hd = p.head_dim;
  const int kv_dim = p.kv_heads * hd;
  const int q_dim = p.heads * hd;
  const int pairs = (p.heads + p.kv_heads) * half;
  const int w = blockIdx.y * blockDim.x + threadIdx.x;
  if (w >= pairs + kv_dim) return;
  bf16* row = p.qkv + static_cast<int64_t>(r) * p.qkv_stride;
  const int slot = pos % p.block_size;
  bf16* block = p.kv_cache + static_cast<int64_t>(p.row_block[r]) * p.block_elements;
  bf16* k_dst = block + p.k_offset + static_cast<int64_t>(slot) * kv_dim;
  bf16* v_dst = block + p.v_offset + static_cast<int64_t>(slot) * kv_dim;
  if (w < pairs) {
    const int h = w / half;  // q heads first, then k heads (contiguous in the row)
    const int i = w % half;
    bf16* x = row + h * hd;
    // HF: angle = inv_freq * pos in fp32, cos/sin of it, times the attention factor.
    const float angle = p.freqs[p.freq_offset[r] + i] * static_cast<float>(pos);
    float sn, c;
    sincosf(angle, &sn, &c);
    c *= p.attention_scaling;
    sn *= p.attention_scaling;
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
    return;
  }
  // K's dimensions past rotary_dim (partial rotary), and all of V.
  const int e = w - pairs;
  if (e % hd >= p.rotary_dim) k_dst[e] = row[q_dim + e];
  v_dst[e] = row[q_dim + kv_dim + e];
}

// Grid-stride over the output; with inter % 8 == 0 each thread takes 8 elements (16-byte loads of
// gate and up, one 16-byte store).
template <bool kVec8>
__global__ void SiluMulKernel(SiluMulParams p) {
  GridDependencyBegin();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t start = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if constexpr (kVec8) {
    const int per_row = p.inter / 8;
    const int64_t total = static_cast<int64_t>(p.rows) * per_row;
    for (int64_t v = start; v < total; v += stride) {
      const int64_t r = v / per_row;
      const int i = static_cast<int>(v % per_row) * 8;
      const bf16* g = p.gate_up + r * 2 * p.inter + i;
      const uint4 gv = *reinterpret_cast<const uint4*>(g);
      const uint4 uv = *reinterpret_cast<const uint4*>(g + p.inter);
      const uint32_t gw[4] = {gv.x, gv.y, gv.z, gv.w};
      const uint32_t uw[4] = {uv.x, uv.y, uv.z, uv.w};
      uint32_t ow[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float g0 = __uint_as_float(gw[j] << 16), g1 = __uint_as_float(gw[j] & 0xffff0000u);
        const float u0 = __uint_as_float(uw[j] << 16), u1 = __uint_as_float(uw[j] & 0xffff0000u);
        __nv_bfloat162 o = __floats2bfloat162_rn(Silu(g0) * u0, Silu(g1) * u1);
        ow[j] = *reinterpret_cast<uint32_t*>(&o);
      }
      *reinterpret_cast<uint4*>(p.out + r * p.inter + i) = make_uint4(ow[0], ow[1], ow[2], ow[3]);
    }
  } else {
    const int64_t total = static_cast<int64_t>(p.rows) * p.inter;
    for (int64_t e = start; e < total; e += stride) {
      const int64_t r = e / p.inter;
      const int i = static_cast<int>(e % p.inter);
      const bf16* g = p.gate_up + r * 2 * p.inter;
      const float gv = __bfloat162float(g[i]);
      p.out[e] = __float2bfloat16(Silu(gv) * __bfloat162float(g[p.inter + i]));
    }
  }
}

__global__ void RandomFillKernel(RandomFillParams p) {
  constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.count;
       i += stride) {
    uint64_t z = p.key + static_cast<uint64_t>(i + 1) * kGolden;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const auto k = static_cast<int32_t>(z >> 40);
    // Exact in fp32 up to the final multiply-add, which must round as the host's does: no FMA.
    const float u = static_cast<float>(2 * k + 1 - (1 << 24)) * 0x1p-24f;
    const float v = __fadd_rn(p.offset, __fmul_rn(p.scale, u));
    if (p.bf16_out) {
      static_cast<bf16*>(p.dst)[i] = __float2bfloat16_rn(v);
    } else {
      static_cast<float*>(p.dst)[i] = v;
    }
  }
}

}  // namespace

cudaError_t LaunchRandomFill(const RandomFillParams& p, cudaStream_t stream) {
  if (p.count == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((p.count + kThreads - 1) / kThreads, 132 * 32);
  RandomFillKernel<<<static_cast<int>(blocks), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchEmbedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  EmbeddingKernel<<<p.rows, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchAddRmsNorm(const AddRmsNormParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  // 16-byte accesses when rows stay 16-byte aligned; up to 1024 threads, one vector each.
  const bool vec4 = p.hidden % 4 == 0;
  const int lanes = vec4 ? p.hidden / 4 : p.hidden;
  const int threads = std::clamp((lanes + 31) / 32 * 32, 32, 1024);
  return vec4 ? LaunchWithDependency(AddRmsNormKernel<true>, dim3(p.rows), dim3(threads), 0,
                                     stream, p)
              : LaunchWithDependency(AddRmsNormKernel<false>, dim3(p.rows), dim3(threads), 0,
                                     stream, p);
}

cudaError_t LaunchAddBias(const AddBiasParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  return LaunchWithDependency(AddBiasKernel, dim3(p.rows), dim3(kThreads), 0, stream, p);
}

cudaError_t LaunchRopeKvWrite(const RopeKvWriteParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.rotary_dim % 2 != 0 || p.rotary_dim > p.head_dim) return cudaErrorInvalidValue;
  const int items = (p.heads + p.kv_heads) * (p.rotary_dim / 2) + p.kv_heads * p.head_dim;
  const dim3 grid(p.rows, (items + kThreads - 1) / kThreads);
  return LaunchWithDependency(RopeKvWriteKernel, grid, dim3(kThreads), 0, stream, p);
}

cudaError_t LaunchSiluMul(const SiluMulParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  const bool vec8 = p.inter % 8 == 0;
  const int64_t items = static_cast<int64_t>(p.rows) * (vec8 ? p.inter / 8 : p.inter);
  const int blocks = static_cast<int>(std::min<int64_t>((items + kThreads - 1) / kThreads, 132 * 16));
  return vec8 ? LaunchWithDependency(SiluMulKernel<true>, dim3(blocks), dim3(kThreads), 0, stream, p)
              : LaunchWithDependency(SiluMulKernel<false>, dim3(blocks), dim3(kThreads), 0, stream,
                                     p);
}

}  // namespace tandem::engine::cuda
