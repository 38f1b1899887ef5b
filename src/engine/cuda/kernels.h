// The cuda backend's kernels: a params struct and a stream in, a cudaError_t out (the launch's
// error; execution errors surface at the next synchronisation). Row-major activations; "rows" are
// the tokens of one step, all sequences concatenated. bf16 storage, fp32 arithmetic.
//
// These are the simple first versions (one CTA per row, or per (row, head) for attention): the
// correctness baseline for the fast kernels that replace them.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tandem::engine::cuda {

using bf16 = __nv_bfloat16;

// x[r] = float(table[tokens[r]]).
struct EmbeddingParams {
  const int32_t* tokens = nullptr;  // [rows]
  const bf16* table = nullptr;      // [vocab, hidden]
  float* x = nullptr;               // [rows, hidden]
  int rows = 0;
  int hidden = 0;
};
cudaError_t LaunchEmbedding(const EmbeddingParams& p, cudaStream_t stream);

// For each output row r with source row s = (gather ? gather[r] : r):
//   x[s] += float(delta[s]) (when delta is set); out[r] = bf16(weight · x[s] / rms(x[s])).
// The residual stream x stays fp32 (as the CPU oracle's); gather rows must be distinct.
struct AddRmsNormParams {
  float* x = nullptr;               // [*, hidden]
  const bf16* delta = nullptr;      // [*, hidden] or null
  const float* weight = nullptr;    // [hidden]
  bf16* out = nullptr;              // [rows, hidden]
  const int32_t* gather = nullptr;  // [rows] or null
  int rows = 0;
  int hidden = 0;
  float eps = 1e-6f;
};
cudaError_t LaunchAddRmsNorm(const AddRmsNormParams& p, cudaStream_t stream);

// data[r][c] = bf16(float(data[r][c]) + bias[c]).
struct AddBiasParams {
  bf16* data = nullptr;
  const float* bias = nullptr;
  int rows = 0;
  int cols = 0;
};
cudaError_t LaunchAddBias(const AddBiasParams& p, cudaStream_t stream);

// Rotates the q and k heads of each row of the fused qkv activations in place (HF rotate-half
// pairing, cos/sin × attention_scaling), then writes the row's k and v into its KV slot:
// block row_block[r], slot positions[r] % block_size, in the block-major layout.
struct RopeKvWriteParams {
  bf16* qkv = nullptr;  // [rows, qkv_stride]: q heads, k heads, v heads
  int rows = 0;
  int qkv_stride = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int rotary_dim = 0;
  const int32_t* positions = nullptr;    // [rows]
  const int32_t* freq_offset = nullptr;  // [rows]: offset of the row's table in freqs
  const float* freqs = nullptr;          // inverse frequency tables, rotary_dim / 2 each
  float attention_scaling = 1.0f;
  bf16* kv_cache = nullptr;            // the pool: num_blocks × block_elements
  const int32_t* row_block = nullptr;  // [rows]: physical block of the row's position
  int64_t block_elements = 0;
  int64_t k_offset = 0;  // element offset of this layer's K plane in a block
  int64_t v_offset = 0;
  int block_size = 0;
};
cudaError_t LaunchRopeKvWrite(const RopeKvWriteParams& p, cudaStream_t stream);

// out[r][i] = bf16(silu(gate) · up) with gate = gate_up[r][i], up = gate_up[r][inter + i].
struct SiluMulParams {
  const bf16* gate_up = nullptr;  // [rows, 2 * inter]
  bf16* out = nullptr;            // [rows, inter]
  int rows = 0;
  int inter = 0;
};
cudaError_t LaunchSiluMul(const SiluMulParams& p, cudaStream_t stream);

// Paged causal attention for prefill chunks and decode tokens alike: row r (query at position
// positions[r]) attends, for each query head h, to positions [max(0, pos - window + 1), pos] of its
// sequence through block_tables[table_offset[r] ...], with kv head h / (heads / kv_heads).
// Online softmax in fp32.
struct PagedAttentionParams {
  const bf16* q = nullptr;  // [rows, q_stride], head h at h * head_dim
  int q_stride = 0;
  bf16* out = nullptr;  // [rows, heads * head_dim]
  const bf16* kv_cache = nullptr;
  int64_t block_elements = 0;
  int64_t k_offset = 0;
  int64_t v_offset = 0;
  int block_size = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;  // at most kMaxHeadDim
  int rows = 0;
  const int32_t* positions = nullptr;     // [rows]
  const int32_t* table_offset = nullptr;  // [rows]: where the row's block table starts
  const int32_t* block_tables = nullptr;
  int window = 0;  // sliding window in tokens; 0 = none
  float scale = 1.0f;
};
inline constexpr int kMaxHeadDim = 512;
cudaError_t LaunchPagedAttention(const PagedAttentionParams& p, cudaStream_t stream);

// Element i of dst = offset + scale * u(key, i), the counter-based generator of the model's
// RandomWeights (model/weight_source.h: k = splitmix64_mix(key + (i + 1) * 0x9e3779b97f4a7c15)
// >> 40, u = (2k + 1 - 2^24) / 2^24), in fp32, then stored as bf16 (round to nearest even) or
// fp32: the same bits as generating on the host and converting.
struct RandomFillParams {
  void* dst = nullptr;
  bool bf16_out = true;  // else fp32
  int64_t count = 0;
  uint64_t key = 0;
  float scale = 0.0f;
  float offset = 0.0f;
};
cudaError_t LaunchRandomFill(const RandomFillParams& p, cudaStream_t stream);

}  // namespace tandem::engine::cuda
