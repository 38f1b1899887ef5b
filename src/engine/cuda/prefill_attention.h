// Prefill attention on tensor cores (FlashAttention-2 style, mma.sync m16n8k16 bf16 → fp32):
// causal, GQA/MQA, sliding window, chunked prefill over the paged KV cache.
//
// The queries of sequence s are rows seq_row_start[s] .. + seq_num_rows[s] - 1 of q/out, at
// positions seq_start_pos[s] .. + seq_num_rows[s] - 1; row at position p attends, for query head h,
// to positions [max(0, p - window + 1), p] (window 0 = no window) of kv head
// h / (heads / kv_heads), read through block_tables[seq_table_offset[s] ...] (position j in block
// table[j / block_size], slot j % block_size). The KV of all those positions, the chunk's own
// included, must already be in the cache.
//
// Work list: one CTA per (tile, query head). tiles[2 * i] is a sequence index, tiles[2 * i + 1]
// the first row of the tile within that sequence (a multiple of PrefillTileRows() by convention,
// though any value works); the tile covers min(PrefillTileRows(), seq_num_rows - first) rows.
// Tiles run in list order, so listing the heavy ones (long context, late rows) first shortens the
// tail. Every row must be covered by exactly one tile.
//
// Numerics: keys are visited in tiles aligned to absolute positions (tile t = positions
// [t * T, (t + 1) * T)) in increasing order, and masked keys contribute exactly zero, so a row's
// output is bit-identical however its prompt is chunked and whatever else is in the launch.
// Online softmax in fp32, output bf16.
//
// Requirements: head_dim 64 or 128 and block_size a power of two (else cudaErrorNotSupported);
// heads % kv_heads == 0; q, out and kv_cache 16-byte aligned, q_stride, block_elements, k_offset
// and v_offset multiples of 8 elements (else cudaErrorInvalidValue); num_tiles ≤ 65535.
// No host synchronisation, no allocation: safe to capture in a CUDA graph.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tandem::engine::cuda {

struct PrefillAttentionParams {
  const __nv_bfloat16* q = nullptr;  // [rows, q_stride], head h at h * head_dim
  int q_stride = 0;
  __nv_bfloat16* out = nullptr;  // [rows, heads * head_dim]
  const __nv_bfloat16* kv_cache = nullptr;
  int64_t block_elements = 0;
  int64_t k_offset = 0;  // element offset of this layer's K plane in a block
  int64_t v_offset = 0;
  int block_size = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int window = 0;  // sliding window in tokens; 0 = none
  float scale = 1.0f;
  const int32_t* seq_row_start = nullptr;     // [num_seqs]: first row of the sequence in q/out
  const int32_t* seq_num_rows = nullptr;      // [num_seqs]
  const int32_t* seq_start_pos = nullptr;     // [num_seqs]: position of the sequence's first row
  const int32_t* seq_table_offset = nullptr;  // [num_seqs]: where its block table starts
  const int32_t* block_tables = nullptr;
  const int32_t* tiles = nullptr;  // [num_tiles][2]: (sequence index, first row in the sequence)
  int num_tiles = 0;
};

// Query rows per tile for `head_dim` (0 when head_dim is not supported).
int PrefillTileRows(int head_dim);

cudaError_t LaunchPrefillAttention(const PrefillAttentionParams& p, cudaStream_t stream);

}  // namespace tandem::engine::cuda
