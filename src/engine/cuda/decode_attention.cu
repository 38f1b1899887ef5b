// Split-KV decode attention. A CTA of 4 warps serves one (sequence, kv head, split); the query
// heads of the GQA group are the rows of one m16 tile (rows ≥ group are zero padding), so K and V
// are read once per group and both products run on mma.sync. The split's keys come in tiles of 16
// positions aligned to absolute positions; warp w takes tiles w, w + 4, ... of the split, each
// through its own kStages-deep cp.async ring (no CTA barrier in the loop), with its own online
// softmax state. The four warps' states are merged in shared memory in warp order; a single-split
// sequence writes its output, otherwise the split's (max, sum, accumulator) go to the workspace and
// DecodeCombineKernel merges the splits in increasing order.
#include <cmath>
#include <cstdint>

#include "engine/cuda/decode_attention.h"
#include "engine/cuda/mma.cuh"
#include "engine/cuda/pdl.cuh"

namespace tandem::engine::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kKeys = 16;      // positions per warp tile
constexpr int kMaxGroup = 16;  // query heads per CTA: one m16 tile
constexpr float kLog2e = 1.4426950408889634f;

template <int kHeadDim>
struct DecodeShape {
  static constexpr int kChunks = kHeadDim / 8;
  static constexpr int kStages = kHeadDim == 64 ? 4 : 2;        // 16 KiB of K/V per warp
  static constexpr uint32_t kTileBytes = kKeys * kHeadDim * 2;  // one K or V tile
  static constexpr uint32_t kStageBytes = 2 * kTileBytes;       // K then V
  static constexpr uint32_t kWarpBytes = kStages * kStageBytes;
  static constexpr uint32_t kQBytes = kMaxGroup * kHeadDim * 2;
  static constexpr int kOStride = kHeadDim + 8;  // floats; padded against bank conflicts
  static_assert(kMaxGroup * kOStride * 4 <= kWarpBytes, "partial O must fit a warp's ring");
  static constexpr uint32_t kMlBytes = kWarps * kMaxGroup * 2 * 4;
  // Q, the warps' rings (reused for the partial accumulators), then (max, sum) per warp and row.
  static constexpr uint32_t kSmemBytes = kQBytes + kWarps * kWarpBytes + kMlBytes;
};

// Positions [begin, pos] attended by a query at `pos`.
__device__ __forceinline__ int AttendBegin(int pos, int window) {
  return window > 0 ? max(0, pos - window + 1) : 0;
}

// Three CTAs per SM (≤ 168 registers, 69 KiB of shared memory each).
template <int kHeadDim>
__global__ void __launch_bounds__(kThreads, 3)
    DecodeAttentionKernel(const DecodeAttentionParams p, int block_shift) {
  using Shape = DecodeShape<kHeadDim>;
  constexpr int kChunks = Shape::kChunks;
  constexpr int kStages = Shape::kStages;
  extern __shared__ __align__(128) unsigned char smem[];
  GridDependencyBegin();

  const int seq = blockIdx.x;
  const int kvh = blockIdx.y;
  const int split = blockIdx.z;
  const int pos = p.positions[seq];
  const int begin = AttendBegin(pos, p.window);
  const int split_lo = split * p.split_tokens;
  const int lo = max(split_lo, begin);
  const int hi = min(split_lo + p.split_tokens - 1, pos);
  if (lo > hi) return;  // the whole CTA: no attended position in this split
  const bool single = begin / p.split_tokens == pos / p.split_tokens || p.max_splits == 1;
  const int group = p.heads / p.kv_heads;
  const int q_row = p.rows[seq];

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const uint32_t s_q = SmemAddress(smem);
  const uint32_t s_ring = s_q + Shape::kQBytes + warp * Shape::kWarpBytes;
  float* s_ml = reinterpret_cast<float*>(smem + Shape::kQBytes + kWarps * Shape::kWarpBytes);

  {
    const bf16* q_src = p.q + static_cast<int64_t>(q_row) * p.q_stride + kvh * group * kHeadDim;
    for (int idx = tid; idx < kMaxGroup * kChunks; idx += kThreads) {
      const int r = idx / kChunks;
      const int c = idx % kChunks;
      const bool valid = r < group;
      CpAsync16(s_q + SwizzledOffset<kHeadDim>(r, c), q_src + (valid ? r * kHeadDim : 0) + c * 8,
                valid);
    }
    CpAsyncCommit();
  }

  // This warp's tiles: first_kt, first_kt + 4, ... (tile kt = positions [16 kt, 16 kt + 15]).
  const int kt_split = split_lo / kKeys + warp;
  const int kt_lo = lo / kKeys;
  const int kt_hi = hi / kKeys;
  const int first_kt =
      kt_split + (kt_lo > kt_split ? (kt_lo - kt_split + kWarps - 1) / kWarps : 0) * kWarps;
  const int n_tiles = first_kt <= kt_hi ? (kt_hi - first_kt) / kWarps + 1 : 0;

  const int32_t* table = p.block_tables + p.table_offset[seq];
  const int64_t token_elements = static_cast<int64_t>(p.kv_heads) * kHeadDim;
  const int slot_mask = (1 << block_shift) - 1;
  const bf16* kv_head = p.kv_cache + kvh * kHeadDim;
  // Loader: lane copies chunks ld_chunk, ld_chunk + 2, ... of tile row ld_row (whole 32-byte
  // sectors per instruction, distinct banks per 8-lane phase).
  const int ld_row = lane & 15;
  const int ld_chunk = lane >> 4;
  // Element offset of row ld_row of the warp's tile i (-1 = not attended, not read). Each is
  // looked up one copy ahead, so the block-table read overlaps the previous tile.
  auto kv_offset = [&](int i) -> int64_t {
    const int j = (first_kt + i * kWarps) * kKeys + ld_row;
    if (i >= n_tiles || j < begin || j > pos) return -1;
    return static_cast<int64_t>(table[j >> block_shift]) * p.block_elements +
           (j & slot_mask) * token_elements;
  };
  auto load = [&](int64_t offset, int stage) {
    const bool valid = offset >= 0;
    const bf16* k_src = kv_head + (valid ? offset : 0) + p.k_offset;
    const bf16* v_src = kv_head + (valid ? offset : 0) + p.v_offset;
    const uint32_t k_dst = s_ring + stage * Shape::kStageBytes;
    const uint32_t v_dst = k_dst + Shape::kTileBytes;
#pragma unroll
    for (int c = ld_chunk; c < kChunks; c += 2) {
      CpAsync16(k_dst + SwizzledOffset<kHeadDim>(ld_row, c), k_src + c * 8, valid);
      CpAsync16(v_dst + SwizzledOffset<kHeadDim>(ld_row, c), v_src + c * 8, valid);
    }
  };
  {
    int64_t offsets[kStages - 1];
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) offsets[s] = kv_offset(s);
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < n_tiles) load(offsets[s], s);
      CpAsyncCommit();
    }
  }
  int64_t next_offset = kv_offset(kStages - 1);  // of the tile copied next
  CpAsyncWait<kStages - 1>();                    // the Q group
  __syncthreads();

  // ldmatrix lane roles, as in the prefill kernel.
  const LaneSwizzle qv_swizzle(lane, lane >> 4);
  const LaneSwizzle k_swizzle(lane, (lane >> 3) & 1);
  const uint32_t k_lane = ((lane & 7) + ((lane >> 4) << 3)) * kHeadDim * 2;
  const uint32_t v_lane = ((lane & 7) + (((lane >> 3) & 1) << 3)) * kHeadDim * 2;
  uint32_t qf[kHeadDim / 16][4];
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk) {
    LdMatrixX4(qf[kk], s_q + (lane & 15) * kHeadDim * 2 + qv_swizzle(kk));
  }

  float o[kHeadDim / 8][4];
#pragma unroll
  for (int dt = 0; dt < kHeadDim / 8; ++dt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.0f;
  }
  float m[2] = {-INFINITY, -INFINITY};  // rows lane / 4 and lane / 4 + 8
  float l[2] = {0.0f, 0.0f};
  const float scale_log2 = p.scale * kLog2e;

  for (int i = 0; i < n_tiles; ++i) {
    if (i + kStages - 1 < n_tiles) load(next_offset, (i + kStages - 1) % kStages);
    CpAsyncCommit();
    next_offset = kv_offset(i + kStages);
    CpAsyncWait<kStages - 1>();
    __syncwarp();
    const uint32_t k_tile = s_ring + (i % kStages) * Shape::kStageBytes;
    const uint32_t v_tile = k_tile + Shape::kTileBytes + v_lane;

    float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
      uint32_t b[4];
      LdMatrixX4(b, k_tile + k_lane + k_swizzle(kk));
      MmaBf16(s[0], qf[kk], b[0], b[1]);
      MmaBf16(s[1], qf[kk], b[2], b[3]);
    }
    const int key0 = (first_kt + i * kWarps) * kKeys;
    if (key0 < begin || key0 + kKeys - 1 > pos) {
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = key0 + 8 * nt + 2 * (lane & 3) + (e & 1);
          if (j < begin || j > pos) s[nt][e] = -INFINITY;
        }
      }
    }
    // Every tile holds a valid key for every row, so the max is finite.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float mx = fmaxf(m[half], fmaxf(fmaxf(s[0][2 * half], s[0][2 * half + 1]),
                                      fmaxf(s[1][2 * half], s[1][2 * half + 1])));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float correction = m[half] == mx ? 1.0f : Exp2((m[half] - mx) * scale_log2);
      const float offset = mx * scale_log2;
      m[half] = mx;
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float pr = Exp2(fmaf(s[nt][2 * half + e], scale_log2, -offset));
          s[nt][2 * half + e] = pr;
          sum += pr;
        }
      }
      l[half] = l[half] * correction + sum;
#pragma unroll
      for (int dt = 0; dt < kHeadDim / 8; ++dt) {
        o[dt][2 * half] *= correction;
        o[dt][2 * half + 1] *= correction;
      }
    }
    uint32_t pa[4];
    pa[0] = PackBf16(s[0][0], s[0][1]);
    pa[1] = PackBf16(s[0][2], s[0][3]);
    pa[2] = PackBf16(s[1][0], s[1][1]);
    pa[3] = PackBf16(s[1][2], s[1][3]);
#pragma unroll
    for (int dp = 0; dp < kHeadDim / 16; ++dp) {
      uint32_t b[4];
      LdMatrixX4Trans(b, v_tile + qv_swizzle(dp));
      MmaBf16(o[2 * dp], pa, b[0], b[1]);
      MmaBf16(o[2 * dp + 1], pa, b[2], b[3]);
    }
    __syncwarp();  // the stage is refilled by a later iteration
  }
  CpAsyncWait<0>();
  __syncwarp();

  // The warp's partial state → shared memory (its ring is free now).
  float* s_o = reinterpret_cast<float*>(smem + Shape::kQBytes + warp * Shape::kWarpBytes);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float sum = l[half];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int r = (lane >> 2) + 8 * half;
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) {
      *reinterpret_cast<float2*>(s_o + r * Shape::kOStride + 8 * dt + 2 * (lane & 3)) =
          make_float2(o[dt][2 * half], o[dt][2 * half + 1]);
    }
    if ((lane & 3) == 0) {
      s_ml[(warp * kMaxGroup + r) * 2] = m[half];
      s_ml[(warp * kMaxGroup + r) * 2 + 1] = sum;
    }
  }
  __syncthreads();

  // Merge the warps in warp order; thread handles 4 dims of one query head.
  const int64_t base = (static_cast<int64_t>(seq) * p.heads + kvh * group) * p.max_splits + split;
  for (int idx = tid; idx < group * (kHeadDim / 4); idx += kThreads) {
    const int r = idx / (kHeadDim / 4);
    const int d = (idx % (kHeadDim / 4)) * 4;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_ml[(w * kMaxGroup + r) * 2]);
    float sum = 0.0f;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float mw = s_ml[(w * kMaxGroup + r) * 2];
      const float f = mw == -INFINITY ? 0.0f : Exp2((mw - mx) * scale_log2);
      sum += f * s_ml[(w * kMaxGroup + r) * 2 + 1];
      const float4 ow = *reinterpret_cast<const float4*>(
          reinterpret_cast<const float*>(smem + Shape::kQBytes + w * Shape::kWarpBytes) +
          r * Shape::kOStride + d);
      acc.x += f * ow.x;
      acc.y += f * ow.y;
      acc.z += f * ow.z;
      acc.w += f * ow.w;
    }
    if (single) {
      const float inv = 1.0f / sum;
      bf16* dst = p.out + static_cast<int64_t>(q_row) * p.heads * kHeadDim +
                  (kvh * group + r) * kHeadDim + d;
      uint2 packed;
      packed.x = PackBf16(acc.x * inv, acc.y * inv);
      packed.y = PackBf16(acc.z * inv, acc.w * inv);
      *reinterpret_cast<uint2*>(dst) = packed;
    } else {
      const int64_t slot = base + static_cast<int64_t>(r) * p.max_splits;
      *reinterpret_cast<float4*>(p.workspace + slot * kHeadDim + d) = acc;
      if (d == 0) {
        float* ml =
            p.workspace + static_cast<int64_t>(p.num_seqs) * p.heads * p.max_splits * kHeadDim;
        ml[slot * 2] = mx;
        ml[slot * 2 + 1] = sum;
      }
    }
  }
}

// One thread per 4 dims of one (sequence, head); blockDim (kHeadDim / 4, kCombineHeads).
constexpr int kCombineHeads = 4;

template <int kHeadDim>
__global__ void DecodeCombineKernel(const DecodeAttentionParams p) {
  GridDependencyBegin();
  const int seq = blockIdx.x;
  const int h = blockIdx.y * kCombineHeads + threadIdx.y;
  if (h >= p.heads) return;
  const int pos = p.positions[seq];
  const int first = AttendBegin(pos, p.window) / p.split_tokens;
  const int last = pos / p.split_tokens;
  if (first == last) return;  // written by the attention kernel
  const int d = threadIdx.x * 4;
  const int64_t base = (static_cast<int64_t>(seq) * p.heads + h) * p.max_splits;
  const float* ml =
      p.workspace + static_cast<int64_t>(p.num_seqs) * p.heads * p.max_splits * kHeadDim;
  const float scale_log2 = p.scale * kLog2e;
  float mx = -INFINITY;
  for (int s = first; s <= last; ++s) mx = fmaxf(mx, ml[(base + s) * 2]);
  float sum = 0.0f;
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  for (int s = first; s <= last; ++s) {
    const float f = Exp2((ml[(base + s) * 2] - mx) * scale_log2);
    sum += f * ml[(base + s) * 2 + 1];
    const float4 os = *reinterpret_cast<const float4*>(p.workspace + (base + s) * kHeadDim + d);
    acc.x += f * os.x;
    acc.y += f * os.y;
    acc.z += f * os.z;
    acc.w += f * os.w;
  }
  const float inv = 1.0f / sum;
  bf16* dst = p.out + static_cast<int64_t>(p.rows[seq]) * p.heads * kHeadDim + h * kHeadDim + d;
  uint2 packed;
  packed.x = PackBf16(acc.x * inv, acc.y * inv);
  packed.y = PackBf16(acc.z * inv, acc.w * inv);
  *reinterpret_cast<uint2*>(dst) = packed;
}

template <int kHeadDim>
cudaError_t Launch(const DecodeAttentionParams& p, int block_shift, cudaStream_t stream) {
  constexpr uint32_t kSmem = DecodeShape<kHeadDim>::kSmemBytes;
  auto* kernel = DecodeAttentionKernel<kHeadDim>;
  // Per call: the attribute is per device, and setting it is a host-side call (graph-safe).
  cudaError_t error =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (error != cudaSuccess) return error;
  error = LaunchWithDependency(kernel, dim3(p.num_seqs, p.kv_heads, p.max_splits), dim3(kThreads),
                               kSmem, stream, p, block_shift);
  if (error != cudaSuccess || p.max_splits == 1) return error;
  return LaunchWithDependency(DecodeCombineKernel<kHeadDim>,
                              dim3(p.num_seqs, (p.heads + kCombineHeads - 1) / kCombineHeads),
                              dim3(kHeadDim / 4, kCombineHeads), 0, stream, p);
}

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

size_t DecodeAttentionWorkspaceFloats(int num_seqs, int heads, int head_dim, int max_splits) {
  return static_cast<size_t>(num_seqs) * heads * max_splits * (head_dim + 2);
}

cudaError_t LaunchDecodeAttention(const DecodeAttentionParams& p, cudaStream_t stream) {
  if (p.head_dim != 64 && p.head_dim != 128) return cudaErrorNotSupported;
  if (p.block_size <= 0 || (p.block_size & (p.block_size - 1)) != 0) return cudaErrorNotSupported;
  if (p.heads <= 0 || p.kv_heads <= 0 || p.heads % p.kv_heads != 0) return cudaErrorInvalidValue;
  if (p.heads / p.kv_heads > kMaxGroup) return cudaErrorNotSupported;
  if (p.num_seqs == 0) return cudaSuccess;
  if (p.num_seqs < 0 || p.kv_heads > 65535 || p.split_tokens <= 0 || p.split_tokens % kKeys != 0 ||
      p.max_splits <= 0 || p.max_splits > 65535 || p.window < 0) {
    return cudaErrorInvalidValue;
  }
  if (!Aligned16(p.q) || !Aligned16(p.out) || !Aligned16(p.kv_cache) || p.q_stride % 8 != 0 ||
      p.block_elements % 8 != 0 || p.k_offset % 8 != 0 || p.v_offset % 8 != 0) {
    return cudaErrorInvalidValue;
  }
  if (p.max_splits > 1 && (p.workspace == nullptr || !Aligned16(p.workspace))) {
    return cudaErrorInvalidValue;
  }
  int block_shift = 0;
  while ((1 << block_shift) < p.block_size) ++block_shift;
  return p.head_dim == 64 ? Launch<64>(p, block_shift, stream)
                          : Launch<128>(p, block_shift, stream);
}

}  // namespace tandem::engine::cuda
