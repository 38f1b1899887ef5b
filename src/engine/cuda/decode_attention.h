// Decode attention, split-KV ("flash-decoding"): one query token per sequence, many sequences of
// different lengths in one launch, over the paged KV cache.
//
// Sequence i's query is row rows[i] of q/out, at position positions[i]; for query head h it
// attends to positions [max(0, pos - window + 1), pos] (window 0 = no window) of kv head
// h / (heads / kv_heads), read through block_tables[table_offset[i] ...] (position j in block
// table[j / block_size], slot j % block_size). The KV of all those positions, the query's own
// included, must already be in the cache.
//
// Work: one CTA of 4 warps per (sequence, kv head, split) serves every query head of the GQA group
// (K/V read once per group) on tensor cores; split s covers positions
// [s * split_tokens, (s + 1) * split_tokens). CTAs whose split holds no attended position exit at
// once. A sequence whose attended positions lie in one split gets its output written directly;
// otherwise each split leaves (max, sum, unnormalised accumulator) in the workspace and a second
// kernel merges the splits in increasing order. The partition depends only on the sequence's own
// position and split_tokens, and the order of every reduction is fixed, so a sequence's output is
// bit-identical whatever else is in the launch (keep split_tokens fixed for a run: changing it
// changes the rounding).
//
// Requirements: head_dim 64 or 128, heads / kv_heads in 1..16, block_size a power of two (else
// cudaErrorNotSupported); heads % kv_heads == 0, split_tokens a positive multiple of 16,
// max_splits ≥ 1 with every sequence's context (position + 1) ≤ max_splits * split_tokens, q, out,
// kv_cache and workspace 16-byte aligned, q_stride, block_elements, k_offset and v_offset multiples
// of 8 elements (else cudaErrorInvalidValue; the context bound is not checkable on the host — a
// longer context silently loses its tail). workspace may be null when max_splits == 1.
// No host synchronisation, no allocation, all per-sequence data read from device memory: safe to
// capture in a CUDA graph (the launch shape depends only on num_seqs, kv_heads and max_splits).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace tandem::engine::cuda {

struct DecodeAttentionParams {
  const __nv_bfloat16* q = nullptr;  // [*, q_stride], head h at h * head_dim
  int q_stride = 0;
  __nv_bfloat16* out = nullptr;  // [*, heads * head_dim]
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
  int num_seqs = 0;
  const int32_t* rows = nullptr;          // [num_seqs]: row of the sequence's query in q/out
  const int32_t* positions = nullptr;     // [num_seqs]: query position (context = position + 1)
  const int32_t* table_offset = nullptr;  // [num_seqs]: where its block table starts
  const int32_t* block_tables = nullptr;
  int split_tokens = 128;
  int max_splits = 1;
  float* workspace =
      nullptr;  // DecodeAttentionWorkspaceFloats(num_seqs, heads, head_dim, max_splits)
};

// Floats of workspace a launch with these sizes needs.
size_t DecodeAttentionWorkspaceFloats(int num_seqs, int heads, int head_dim, int max_splits);

cudaError_t LaunchDecodeAttention(const DecodeAttentionParams& p, cudaStream_t stream);

}  // namespace tandem::engine::cuda
