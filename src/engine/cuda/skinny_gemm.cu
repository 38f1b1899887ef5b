// See skinny_gemm.h. Tensor cores with the roles swapped: W's rows are the 16 rows of an
// m16n8k16 mma's A operand and the (up to 8) rows of A its 8 columns, so one mma serves every
// sequence of the batch. Each CTA takes 16 rows of W; its 8 warps split k in blocks of 32, and
// each thread loads 16 contiguous bytes of two W rows (and of one A row) per block straight from
// global memory (W streamed past L1). Because a dot product does not care in which order k is
// visited, thread t's 8 consecutive k feed the fragment slots (2t, 2t+1, 2t+8, 2t+9) of two mmas,
// the same way for A and B. Partial sums of the warps are added in a fixed order.
#include <cstdint>

#include "engine/cuda/mma.cuh"
#include "engine/cuda/skinny_gemm.h"

namespace tandem::engine::cuda {
namespace {

constexpr int kRowsPerCta = 16;
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockK = 32;

__device__ __forceinline__ uint4 LoadStreaming(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__global__ void __launch_bounds__(kThreads) SkinnyGemmKernel(SkinnyGemmParams p) {
  __shared__ float partial[kWarps][kRowsPerCta][8];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;  // fragment row (W rows g, g + 8) and column (A row g)
  const int t = lane % 4;  // k group: 8 consecutive k of each block
  const int row0 = blockIdx.x * kRowsPerCta;
  const int blocks = (p.k + kBlockK - 1) / kBlockK;
  const int per_warp = (blocks + kWarps - 1) / kWarps;
  const int b_begin = warp * per_warp;
  const int b_end = min(blocks, b_begin + per_warp);

  const bool row_lo = row0 + g < p.n;
  const bool row_hi = row0 + g + 8 < p.n;
  const bool token = g < p.m;
  const __nv_bfloat16* w_lo = p.w + static_cast<int64_t>(row_lo ? row0 + g : 0) * p.k + 8 * t;
  const __nv_bfloat16* w_hi = p.w + static_cast<int64_t>(row_hi ? row0 + g + 8 : 0) * p.k + 8 * t;
  const __nv_bfloat16* a_row = p.a + static_cast<int64_t>(token ? g : 0) * p.k + 8 * t;
  const uint4 zero = make_uint4(0, 0, 0, 0);

  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 4
  for (int b = b_begin; b < b_end; ++b) {
    const int k0 = b * kBlockK;
    const bool valid = k0 + 8 * t < p.k;  // k is a multiple of 8: a group is all in or all out
    const uint4 lo = valid && row_lo ? LoadStreaming(w_lo + k0) : zero;
    const uint4 hi = valid && row_hi ? LoadStreaming(w_hi + k0) : zero;
    const uint4 x = valid && token ? __ldg(reinterpret_cast<const uint4*>(a_row + k0)) : zero;
    const uint32_t a1[4] = {lo.x, hi.x, lo.y, hi.y};
    MmaBf16(acc, a1, x.x, x.y);
    const uint32_t a2[4] = {lo.z, hi.z, lo.w, hi.w};
    MmaBf16(acc, a2, x.z, x.w);
  }
  // acc: (W row g, A row 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
  partial[warp][g][2 * t] = acc[0];
  partial[warp][g][2 * t + 1] = acc[1];
  partial[warp][g + 8][2 * t] = acc[2];
  partial[warp][g + 8][2 * t + 1] = acc[3];
  __syncthreads();
  if (threadIdx.x < kRowsPerCta * 8) {
    const int r = threadIdx.x / 8;
    const int m = threadIdx.x % 8;
    if (m < p.m && row0 + r < p.n) {
      float s = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) s += partial[w][r][m];
      const int64_t at = static_cast<int64_t>(m) * p.n + row0 + r;
      if (p.c_f32) {
        static_cast<float*>(p.c)[at] = s;
      } else {
        static_cast<__nv_bfloat16*>(p.c)[at] = __float2bfloat16(s);
      }
    }
  }
}

}  // namespace

bool SkinnyGemmSupports(int m, int k) {
  return m >= 1 && m <= kMaxSkinnyRows && k > 0 && k % 8 == 0;
}

cudaError_t LaunchSkinnyGemm(const SkinnyGemmParams& p, cudaStream_t stream) {
  if (!SkinnyGemmSupports(p.m, p.k)) return cudaErrorNotSupported;
  if (p.n <= 0) return cudaErrorInvalidValue;
  if ((reinterpret_cast<uintptr_t>(p.a) | reinterpret_cast<uintptr_t>(p.w)) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  const int ctas = (p.n + kRowsPerCta - 1) / kRowsPerCta;
  SkinnyGemmKernel<<<ctas, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace tandem::engine::cuda
