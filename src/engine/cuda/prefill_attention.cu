// Prefill attention, FlashAttention-2 style. A CTA of 4 warps takes kBlockM = 128 query rows of one
// head; each warp owns 32 rows (two m16 tiles) and keeps their output accumulators and softmax
// state in registers. Keys and values stream through shared memory in tiles of kBlockN positions
// aligned to absolute positions (double-buffered cp.async, the next tile loads while this one is
// computed, one CTA barrier per tile; the block-table entries of a tile are fetched a tile
// earlier still); S = Q·Kᵀ and O += P·V run on mma.sync m16n8k16 with ldmatrix operands from
// swizzled tiles. Q stays in shared memory (ldmatrix per k-step) to leave registers to the
// accumulators: head_dim 128 uses all 255 registers (two CTAs, eight warps, per SM).
//
// Masked scores are -inf before the exponential, so masked keys contribute exactly zero, and a
// tile that masks all of a row's keys leaves that row's state bit-for-bit unchanged (the
// correction factor is exactly 1, or the state is still empty): a row's result depends only on
// its own valid tiles, never on which other rows share its CTA.
#include <cmath>
#include <cstdint>

#include "engine/cuda/mma.cuh"
#include "engine/cuda/pdl.cuh"
#include "engine/cuda/prefill_attention.h"

namespace tandem::engine::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMmaM = 2;                      // m16 tiles per warp
constexpr int kBlockM = 16 * kMmaM * kWarps;  // query rows per CTA
constexpr float kLog2e = 1.4426950408889634f;

template <int kHeadDim, int kBlockN>
struct PrefillShape {
  static_assert(kHeadDim % 16 == 0 && kBlockN % 64 == 0, "loader covers 64 rows per pass");
  static constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row
  static constexpr uint32_t kQBytes = kBlockM * kHeadDim * 2;
  static constexpr uint32_t kTileBytes = kBlockN * kHeadDim * 2;  // one K or V tile
  static constexpr uint32_t kBlockIdBytes = 2 * (kBlockN / 64) * kThreads * 4;
  // Q, K stages 0 and 1, V stages 0 and 1, block ids of two tiles.
  static constexpr uint32_t kSmemBytes = kQBytes + 4 * kTileBytes + kBlockIdBytes;
};

template <int kHeadDim, int kBlockN, int kSubN>
__global__ void __launch_bounds__(kThreads)
    PrefillAttentionKernel(const PrefillAttentionParams p, int block_shift) {
  using Shape = PrefillShape<kHeadDim, kBlockN>;
  constexpr int kChunks = Shape::kChunks;
  extern __shared__ __align__(128) unsigned char smem[];
  GridDependencyBegin();
  const uint32_t s_q = SmemAddress(smem);
  const uint32_t s_k = s_q + Shape::kQBytes;
  const uint32_t s_v = s_k + 2 * Shape::kTileBytes;
  const uint32_t s_block = s_v + 2 * Shape::kTileBytes;

  const int h = blockIdx.x;
  const int seq = p.tiles[2 * blockIdx.y];
  const int row_first = p.tiles[2 * blockIdx.y + 1];
  const int rows = min(kBlockM, p.seq_num_rows[seq] - row_first);
  if (rows <= 0) return;
  const int64_t row0 = static_cast<int64_t>(p.seq_row_start[seq]) + row_first;
  const int pos0 = p.seq_start_pos[seq] + row_first;
  const int pos_last = pos0 + rows - 1;
  const int window = p.window;
  const int kv_begin = window > 0 ? max(0, pos0 - window + 1) : 0;
  const int t_begin = kv_begin / kBlockN;
  const int t_end = pos_last / kBlockN;
  const int32_t* table = p.block_tables + p.seq_table_offset[seq];
  const int64_t token_elements = static_cast<int64_t>(p.kv_heads) * kHeadDim;
  const int slot_mask = (1 << block_shift) - 1;
  const bf16* kv_head = p.kv_cache + (h / (p.heads / p.kv_heads)) * kHeadDim;

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;

  // Loaders: thread copies chunks ld_chunk, ld_chunk + 2, ... of rows ld_row + 64 i, so that one
  // warp instruction fills whole 32-byte sectors of 16 rows, and each 8-lane phase writes 8
  // distinct banks of the swizzled tile.
  const int ld_row = warp * 16 + (lane & 15);
  const int ld_chunk = lane >> 4;
  // The chunk part of swizzled offsets (LaneSwizzle): loaders and the Q/V ldmatrix use chunks
  // 2k + (lane >> 4), the K ldmatrix 2k + ((lane >> 3) & 1); all rows have row & 7 == lane & 7.
  const LaneSwizzle qv_swizzle(lane, lane >> 4);
  const LaneSwizzle k_swizzle(lane, (lane >> 3) & 1);

  // Only positions some row of the tile attends to are read; the rest of a tile is zero-filled
  // (its scores are masked, and zeros keep 0 · V finite). The physical blocks of a thread's rows
  // of tile u are copied from the block table into block_ids[u & 1][i][tid] (cp.async: no
  // register, no stall) one tile ahead of the K/V copy that needs them; a thread reads back only
  // its own entries.
  constexpr int kPasses = kBlockN / 64;
  int32_t* const block_ids = reinterpret_cast<int32_t*>(smem + (s_block - s_q));
  auto block_slot = [&](int u, int i) { return ((u & 1) * kPasses + i) * kThreads + tid; };
  auto attended = [&](int j) { return j >= kv_begin && j <= pos_last; };
  auto fetch_blocks = [&](int u) {
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int j = u * kBlockN + ld_row + 64 * i;
      if (attended(j))
        CpAsync4(SmemAddress(block_ids + block_slot(u, i)), table + (j >> block_shift));
    }
  };
  auto load_kv = [&](int u, int stage) {
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int r = ld_row + 64 * i;
      const int j = u * kBlockN + r;
      const bool valid = attended(j);
      int64_t offset = 0;
      if (valid) {
        offset = static_cast<int64_t>(block_ids[block_slot(u, i)]) * p.block_elements +
                 (j & slot_mask) * token_elements;
      }
      const bf16* k_src = kv_head + offset + p.k_offset;
      const bf16* v_src = kv_head + offset + p.v_offset;
      const uint32_t k_dst = s_k + stage * Shape::kTileBytes + r * kHeadDim * 2;
      const uint32_t v_dst = s_v + stage * Shape::kTileBytes + r * kHeadDim * 2;
#pragma unroll
      for (int c = 0; c < kChunks / 2; ++c) {
        CpAsync16(k_dst + qv_swizzle(c), k_src + (2 * c + ld_chunk) * 8, valid);
        CpAsync16(v_dst + qv_swizzle(c), v_src + (2 * c + ld_chunk) * 8, valid);
      }
    }
  };
  fetch_blocks(t_begin);
  CpAsyncCommit();
  CpAsyncWait<0>();
  // Q rows past the tile's end are zero-filled (their results are not stored).
#pragma unroll
  for (int i = 0; i < kBlockM / 64; ++i) {
    const int r = ld_row + 64 * i;
    const bool valid = r < rows;
    const bf16* src = p.q + (row0 + (valid ? r : 0)) * p.q_stride + h * kHeadDim;
#pragma unroll
    for (int c = 0; c < kChunks / 2; ++c) {
      CpAsync16(s_q + r * kHeadDim * 2 + qv_swizzle(c), src + (2 * c + ld_chunk) * 8, valid);
    }
  }
  load_kv(t_begin, 0);
  fetch_blocks(t_begin + 1);
  CpAsyncCommit();  // Q, the first K/V tile, the blocks of the second

  // ldmatrix lane roles. A (Q, x4): rows 0-15 of the m-tile, k chunk 2kk + (lane >> 4).
  // B (K, x4): keys (lane & 7) + 8 (lane >> 4), k chunk 2kk + ((lane >> 3) & 1) → b0, b1 of two
  // n-tiles. B (V, x4.trans): keys (lane & 7) + 8 ((lane >> 3) & 1), dim chunk 2dp + (lane >> 4).
  // Every row a lane addresses has row & 7 == lane & 7, so LaneSwizzle gives the chunk part.
  const uint32_t q_base = s_q + (warp * (16 * kMmaM) + (lane & 15)) * kHeadDim * 2;
  const uint32_t k_lane = ((lane & 7) + ((lane >> 4) << 3)) * kHeadDim * 2;
  const uint32_t v_lane = ((lane & 7) + (((lane >> 3) & 1) << 3)) * kHeadDim * 2;

  // Accumulator fragment of an m16n8 tile: element e is row (lane >> 2) + 8 (e >> 1), column
  // 2 (lane & 3) + (e & 1).
  float o[kMmaM][kHeadDim / 8][4];
  float m[kMmaM][2];  // running max of the raw scores
  float l[kMmaM][2];  // this thread's part of the running sum
#pragma unroll
  for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mi][dt][e] = 0.0f;
    }
    m[mi][0] = m[mi][1] = -INFINITY;
    l[mi][0] = l[mi][1] = 0.0f;
  }
  const float scale_log2 = p.scale * kLog2e;

  for (int t = t_begin; t <= t_end; ++t) {
    const int stage = (t - t_begin) & 1;
    // Tile t has landed, and every warp is done with tile t - 1, whose stage the prefetch of
    // tile t + 1 overwrites while tile t is computed: one barrier per tile.
    CpAsyncWait<0>();
    __syncthreads();
    if (t < t_end) {
      load_kv(t + 1, stage ^ 1);
      fetch_blocks(t + 2);
      CpAsyncCommit();
    }
    const uint32_t k_tile = s_k + stage * Shape::kTileBytes + k_lane;
    const uint32_t v_tile = s_v + stage * Shape::kTileBytes + v_lane;

    // Softmax steps of kSubN keys (aligned to absolute positions as well): the S accumulators
    // of one step stay small enough to leave the registers to O.
#pragma unroll
    for (int sub = 0; sub < kBlockN / kSubN; ++sub) {
      float s[kMmaM][kSubN / 8][4];
#pragma unroll
      for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
        for (int nt = 0; nt < kSubN / 8; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) s[mi][nt][e] = 0.0f;
        }
      }
#pragma unroll
      for (int kk = 0; kk < kHeadDim / 16; ++kk) {
        uint32_t a[kMmaM][4];
#pragma unroll
        for (int mi = 0; mi < kMmaM; ++mi) {
          LdMatrixX4(a[mi], q_base + 16 * mi * kHeadDim * 2 + qv_swizzle(kk));
        }
#pragma unroll
        for (int np = 0; np < kSubN / 16; ++np) {
          uint32_t b[4];
          LdMatrixX4(b, k_tile + (sub * kSubN + 16 * np) * kHeadDim * 2 + k_swizzle(kk));
#pragma unroll
          for (int mi = 0; mi < kMmaM; ++mi) {
            MmaBf16(s[mi][2 * np], a[mi], b[0], b[1]);
            MmaBf16(s[mi][2 * np + 1], a[mi], b[2], b[3]);
          }
        }
      }

      // Mask (only steps crossing the diagonal or the window's start need it).
      const int key0 = t * kBlockN + sub * kSubN;
      if (key0 + kSubN - 1 > pos0 || (window > 0 && key0 < pos_last - window + 1)) {
#pragma unroll
        for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int r = warp * (16 * kMmaM) + 16 * mi + (lane >> 2) + 8 * half;
            const int pos = pos0 + min(r, rows - 1);  // rows past the end mirror the last one
#pragma unroll
            for (int nt = 0; nt < kSubN / 8; ++nt) {
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const int j = key0 + 8 * nt + 2 * (lane & 3) + e;
                if (j > pos || (window > 0 && j <= pos - window))
                  s[mi][nt][2 * half + e] = -INFINITY;
              }
            }
          }
        }
      }

      // Online softmax, base 2 on scores prescaled by scale · log2(e).
      float correction[kMmaM][2];
#pragma unroll
      for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          float mx = m[mi][half];
#pragma unroll
          for (int nt = 0; nt < kSubN / 8; ++nt) {
            mx = fmaxf(mx, fmaxf(s[mi][nt][2 * half], s[mi][nt][2 * half + 1]));
          }
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          // Exactly 1 when the max is unchanged (a fully masked tile changes nothing), 0 when the
          // first valid key arrives (Exp2(-inf)).
          correction[mi][half] = m[mi][half] == mx ? 1.0f : Exp2((m[mi][half] - mx) * scale_log2);
          const float offset = mx == -INFINITY ? 0.0f : mx * scale_log2;
          m[mi][half] = mx;
          float sum = 0.0f;
#pragma unroll
          for (int nt = 0; nt < kSubN / 8; ++nt) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const float pr = Exp2(fmaf(s[mi][nt][2 * half + e], scale_log2, -offset));
              s[mi][nt][2 * half + e] = pr;
              sum += pr;
            }
          }
          l[mi][half] = l[mi][half] * correction[mi][half] + sum;
        }
      }
      // Rescale O only when some row of the warp has a new max (× 1 is exact, so skipping it
      // changes no bit; past the first tiles of a long row the max rarely moves).
      bool rescale = false;
#pragma unroll
      for (int mi = 0; mi < kMmaM; ++mi) {
        rescale |= correction[mi][0] != 1.0f || correction[mi][1] != 1.0f;
      }
      if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
        for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
          for (int dt = 0; dt < kHeadDim / 8; ++dt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) o[mi][dt][e] *= correction[mi][e >> 1];
          }
        }
      }

      // O += P · V, P's accumulator fragments reused as A fragments (bf16).
#pragma unroll
      for (int kk = 0; kk < kSubN / 16; ++kk) {
        uint32_t pa[kMmaM][4];
#pragma unroll
        for (int mi = 0; mi < kMmaM; ++mi) {
          pa[mi][0] = PackBf16(s[mi][2 * kk][0], s[mi][2 * kk][1]);
          pa[mi][1] = PackBf16(s[mi][2 * kk][2], s[mi][2 * kk][3]);
          pa[mi][2] = PackBf16(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
          pa[mi][3] = PackBf16(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < kHeadDim / 16; ++dp) {
          uint32_t b[4];
          LdMatrixX4Trans(b, v_tile + (sub * kSubN + 16 * kk) * kHeadDim * 2 + qv_swizzle(dp));
#pragma unroll
          for (int mi = 0; mi < kMmaM; ++mi) {
            MmaBf16(o[mi][2 * dp], pa[mi], b[0], b[1]);
            MmaBf16(o[mi][2 * dp + 1], pa[mi], b[2], b[3]);
          }
        }
      }
    }
  }

  // Epilogue: normalise, stage the warp's own rows of the Q tile as bf16 (no other warp reads
  // them), then store 16-byte vectors.
#pragma unroll
  for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float sum = l[mi][half];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inv = 1.0f / sum;
      const int r = warp * (16 * kMmaM) + 16 * mi + (lane >> 2) + 8 * half;
#pragma unroll
      for (int dt = 0; dt < kHeadDim / 8; ++dt) {
        const uint32_t packed = PackBf16(o[mi][dt][2 * half] * inv, o[mi][dt][2 * half + 1] * inv);
        *reinterpret_cast<uint32_t*>(smem + SwizzledOffset<kHeadDim>(r, dt) + 4 * (lane & 3)) =
            packed;
      }
    }
  }
  __syncwarp();
  const int64_t out_stride = static_cast<int64_t>(p.heads) * kHeadDim;
#pragma unroll
  for (int i = 0; i < kMmaM; ++i) {
    const int r = warp * (16 * kMmaM) + 16 * i + (lane & 15);
    if (r < rows) {
      bf16* dst = p.out + (row0 + r) * out_stride + h * kHeadDim;
#pragma unroll
      for (int c = ld_chunk; c < kChunks; c += 2) {
        *reinterpret_cast<uint4*>(dst + c * 8) =
            *reinterpret_cast<const uint4*>(smem + SwizzledOffset<kHeadDim>(r, c));
      }
    }
  }
}

template <int kHeadDim, int kBlockN, int kSubN>
cudaError_t Launch(const PrefillAttentionParams& p, int block_shift, cudaStream_t stream) {
  constexpr uint32_t kSmem = PrefillShape<kHeadDim, kBlockN>::kSmemBytes;
  auto* kernel = PrefillAttentionKernel<kHeadDim, kBlockN, kSubN>;
  // Per call: the attribute is per device, and setting it is a host-side call (graph-safe).
  const cudaError_t error =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (error != cudaSuccess) return error;
  return LaunchWithDependency(kernel, dim3(p.heads, p.num_tiles), dim3(kThreads), kSmem, stream, p,
                              block_shift);
}

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

int PrefillTileRows(int head_dim) { return head_dim == 64 || head_dim == 128 ? kBlockM : 0; }

cudaError_t LaunchPrefillAttention(const PrefillAttentionParams& p, cudaStream_t stream) {
  if (p.head_dim != 64 && p.head_dim != 128) return cudaErrorNotSupported;
  if (p.block_size <= 0 || (p.block_size & (p.block_size - 1)) != 0) return cudaErrorNotSupported;
  if (p.num_tiles == 0) return cudaSuccess;
  if (p.num_tiles < 0 || p.num_tiles > 65535 || p.heads <= 0 || p.kv_heads <= 0 ||
      p.heads % p.kv_heads != 0 || p.window < 0) {
    return cudaErrorInvalidValue;
  }
  if (!Aligned16(p.q) || !Aligned16(p.out) || !Aligned16(p.kv_cache) || p.q_stride % 8 != 0 ||
      p.block_elements % 8 != 0 || p.k_offset % 8 != 0 || p.v_offset % 8 != 0) {
    return cudaErrorInvalidValue;
  }
  int block_shift = 0;
  while ((1 << block_shift) < p.block_size) ++block_shift;
  // Softmax steps of a whole tile. kSubN = 32 is the knob if a toolchain makes head_dim 128
  // spill (nvcc 13.0: 255 registers, no spill, with either).
  return p.head_dim == 64 ? Launch<64, 64, 64>(p, block_shift, stream)
                          : Launch<128, 64, 64>(p, block_shift, stream);
}

}  // namespace tandem::engine::cuda
