// See skinny_gemm.h. Tensor cores with the roles swapped: W's rows are the 16 rows of an
// m16n8k16 mma's A operand and the (up to 8) rows of A its 8 columns, so one mma serves every
// sequence of the batch. Each CTA takes 16 rows of W; its 8 warps split k in blocks of 32, and
// each thread loads 16 contiguous bytes of two W rows (and of one A row) per block straight from
// global memory (W streamed past L1), issuing the next kGroup blocks' loads before the current
// ones' mmas. Because a dot product does not care in which order k is visited, thread t's 8
// consecutive k feed the fragment slots (2t, 2t+1, 2t+8, 2t+9) of two mmas, the same way for A
// and B. Partial sums of the warps are added in a fixed order. Launched as a programmatic
// dependent of the kernel before it: the first W loads overlap that kernel's end (pdl.cuh).
#include <cstdint>
#include <utility>

#include "engine/cuda/mma.cuh"
#include "engine/cuda/pdl.cuh"
#include "engine/cuda/silu.cuh"
#include "engine/cuda/skinny_gemm.h"

namespace tandem::engine::cuda {
namespace {

constexpr int kRowsPerCta = 16;
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockK = 32;
// Blocks of k per group: a thread loads the next group's W (2 × 16 bytes a block) before it
// multiplies the current one, so 4 to 8 blocks are in flight; measured best on the 8B shapes
// (bench/ENGINE_GPU_NOTES.md #7).
constexpr int kGroup = 4;

// Streamed once: not kept in L1, and the L2 fetches a whole 256-byte line pair. Not volatile, so
// that a group's loads are all issued before its first mma waits on one.
__device__ __forceinline__ uint4 LoadStreaming(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

__device__ __forceinline__ void Mma2(float (&acc)[4], uint4 lo, uint4 hi, uint4 x) {
  const uint32_t a1[4] = {lo.x, hi.x, lo.y, hi.y};
  MmaBf16(acc, a1, x.x, x.y);
  const uint32_t a2[4] = {lo.z, hi.z, lo.w, hi.w};
  MmaBf16(acc, a2, x.z, x.w);
}

__global__ void __launch_bounds__(kThreads) SkinnyGemmKernel(SkinnyGemmParams p) {
  __shared__ float partial[kWarps][kRowsPerCta][8];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;  // fragment row (W rows g, g + 8) and column (A row g)
  const int t = lane % 4;  // k group: 8 consecutive k of each block
  // A CTA's 16 W rows: rows row0 + [0, 16), or, gated, gate rows row0 + [0, 8) as the fragment's
  // rows g and the matching up rows n + row0 + [0, 8) as its rows g + 8.
  const int row0 = blockIdx.x * (p.gated ? kRowsPerCta / 2 : kRowsPerCta);
  const int blocks = (p.k + kBlockK - 1) / kBlockK;
  const int per_warp = (blocks + kWarps - 1) / kWarps;
  const int b_begin = warp * per_warp;
  const int b_end = min(blocks, b_begin + per_warp);

  const bool row_lo = row0 + g < p.n;
  const bool row_hi = p.gated ? row_lo : row0 + g + 8 < p.n;
  const int64_t hi_row = p.gated ? p.n + row0 + g : row0 + g + 8;
  const bool token = g < p.m;
  const __nv_bfloat16* w_lo = p.w + static_cast<int64_t>(row_lo ? row0 + g : 0) * p.k + 8 * t;
  const __nv_bfloat16* w_hi = p.w + (row_hi ? hi_row : 0) * p.k + 8 * t;
  const __nv_bfloat16* a_row = p.a + static_cast<int64_t>(token ? g : 0) * p.k + 8 * t;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  // k is a multiple of 8: each thread's 8-element group of a block is all in or all out.
  auto in_k = [&](int b) { return b < b_end && b * kBlockK + 8 * t < p.k; };

  auto load_w = [&](int b0, uint4 (&lo)[kGroup], uint4 (&hi)[kGroup]) {
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      const int k0 = (b0 + u) * kBlockK;
      lo[u] = in_k(b0 + u) && row_lo ? LoadStreaming(w_lo + k0) : zero;
      hi[u] = in_k(b0 + u) && row_hi ? LoadStreaming(w_hi + k0) : zero;
    }
  };
  // W does not depend on the kernel before this one (launched with programmatic dependent
  // launch): the first group streams in while that kernel finishes; A is read after the wait.
  uint4 lo[kGroup], hi[kGroup];
  load_w(b_begin, lo, hi);
  GridDependencyWait();
  // The next matrix product (after the SiLU-gated one, with no kernel between) may start loading
  // its weights while this one finishes.
  GridDependencyTrigger();
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int b = b_begin; b < b_end; b += kGroup) {
    uint4 next_lo[kGroup], next_hi[kGroup];
    if (b + kGroup < b_end) load_w(b + kGroup, next_lo, next_hi);
    uint4 x[kGroup];
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      const int k0 = (b + u) * kBlockK;
      x[u] = in_k(b + u) && token ? __ldg(reinterpret_cast<const uint4*>(a_row + k0)) : zero;
    }
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      if (b + u < b_end) Mma2(acc, lo[u], hi[u], x[u]);  // warp-uniform
    }
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      lo[u] = next_lo[u];
      hi[u] = next_hi[u];
    }
  }
  // acc: (W row g, A row 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
  partial[warp][g][2 * t] = acc[0];
  partial[warp][g][2 * t + 1] = acc[1];
  partial[warp][g + 8][2 * t] = acc[2];
  partial[warp][g + 8][2 * t + 1] = acc[3];
  __syncthreads();
  if (p.gated) {
    if (threadIdx.x < kRowsPerCta / 2 * 8) {
      const int r = threadIdx.x / 8;
      const int m = threadIdx.x % 8;
      if (m < p.m && row0 + r < p.n) {
        float gate = 0.0f, up = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) {
          gate += partial[w][r][m];
          up += partial[w][r + 8][m];
        }
        gate = __bfloat162float(__float2bfloat16(gate));
        up = __bfloat162float(__float2bfloat16(up));
        static_cast<__nv_bfloat16*>(p.c)[static_cast<int64_t>(m) * p.n + row0 + r] =
            __float2bfloat16(Silu(gate) * up);
      }
    }
    return;
  }
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
  if (p.gated && p.c_f32) return cudaErrorInvalidValue;
  const int rows_per_cta = p.gated ? kRowsPerCta / 2 : kRowsPerCta;
  const int ctas = (p.n + rows_per_cta - 1) / rows_per_cta;
  return LaunchWithDependency(SkinnyGemmKernel, dim3(ctas), dim3(kThreads), 0, stream, p);
}

}  // namespace tandem::engine::cuda
