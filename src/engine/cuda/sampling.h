// Token sampling on the device: one token per requested row of fp32 logits, with the semantics of
// the CPU sampler (engine/sampler.{h,cc}): NaN logits count as -inf; logprobs are the log-softmax
// of the raw logits; repetition, frequency and presence penalties; greedy argmax when the
// temperature is <= 0; else min-p, top-k, top-p (all in the CPU's "Before" order: higher logit
// first, ties by lower token id) and one inverse-CDF draw with u = UniformDraw(seed, draw_index).
// Only the small SampleResult array has to come back to the host.
//
// Algorithm: one CTA of 512 threads per sampled row, no sort. Logits map to order-preserving
// uint32 keys; every cut (top-k, top-p, the draw, the top-n logprobs) is "the smallest prefix in
// Before order whose count or weight reaches a target", found by a radix descent (12 + 10 + 10 key
// bits, shared-memory histograms) over either the whole row or the candidates gathered into
// shared memory, equal keys resolved by token id. A greedy row costs one pass over its logits.
//
// Deterministic: a row's result is a pure function of its logits and its SampleRow (bit for bit,
// whatever the batch and the thread scheduling): weights are summed as integers (fixed point,
// weight × 2^44) and float sums (logprobs) in a fixed order.
//
// Where it differs from the CPU (each changes a draw with probability ~1e-7 or less):
// - weight = exp((l - m) / T) uses the device's expf (2 ulp) and a reciprocal-based division;
// - weights are truncated to multiples of 2^-44 of the top token's weight (the CPU sums doubles):
//   a token weighing less than 2^-44 of the best is never drawn and adds nothing to top-p;
// - the top-p target is ceil(top_p × total) and the draw target floor(u × kept) + 1 in those
//   integers (the CPU compares doubles);
// - logprobs: the log-sum-exp is accumulated in float per thread, then in double (the CPU: double
//   over all tokens); they agree to ~1e-6.
//
// C++17 (built by nvcc in tandem_cuda_kernels); includes no tandem header.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace tandem::engine::cuda {

// Most alternatives a row can ask for (the OpenAI maximum; the engine rejects more at Submit).
inline constexpr int kMaxTopLogprobs = 20;
// Largest vocabulary the kernel takes (token ids must fit 19 bits, weights 2^44 × vocab < 2^64).
inline constexpr int kMaxSampleVocab = 1 << 19;
// Weights are fixed point: weight × 2^kSampleWeightShift, truncated (the best token weighs 2^44).
inline constexpr int kSampleWeightShift = 44;

// What to sample from one logits row.
struct SampleRow {
  int32_t logits_row = 0;    // row of SampleBatchParams::logits
  float temperature = 1.0f;  // <= 0: greedy (argmax of the penalized logits)
  float top_p = 1.0f;        // >= 1: off
  int32_t top_k = 0;         // <= 0 or >= vocab: off
  // min-p as a logit offset: a token survives when l >= max + min_p_offset (compared in double).
  // The CPU's double(T) * double(std::log(min_p)) (logf, computed on the host so that it is the
  // same libm's); -infinity when min-p is off.
  double min_p_offset = 0.0;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;
  uint64_t draw_index = 0;    // tokens generated so far: the draw is UniformDraw(seed, draw_index)
  int32_t penalty_begin = 0;  // this row's entries: penalties[penalty_begin, + penalty_count)
  int32_t penalty_count = 0;
  int32_t num_top_logprobs = -1;  // -1: no logprobs; 0: the chosen token's only; n <= 20: n best
};

// One penalized token of a row. A row's entries are sorted by token, each token at most once; the
// host leaves out what does not apply (repeated = 0 unless the repetition penalty is on,
// output_count = 0 unless a presence or frequency penalty is), exactly as the CPU applies them:
//   x = raw; if (repeated) x = x > 0 ? x / rep : x * rep;
//   if (output_count > 0) { x -= frequency * float(output_count); x -= presence; }
struct PenaltyEntry {
  int32_t token = 0;
  int32_t output_count = 0;  // occurrences in the generated tokens
  int32_t repeated = 0;      // 1: in the prompt or the generated tokens
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0.0f;  // of the raw logits, when num_top_logprobs >= 0
  int32_t num_top = 0;   // entries of top_* filled, best first (ties by lower id)
  int32_t top_tokens[kMaxTopLogprobs] = {};
  float top_logprobs[kMaxTopLogprobs] = {};
};

struct SampleBatchParams {
  const float* logits = nullptr;    // [*, logits_stride] fp32, 4-byte aligned
  int64_t logits_stride = 0;        // elements between rows (>= vocab)
  int vocab = 0;                    // 1 .. kMaxSampleVocab
  const SampleRow* rows = nullptr;  // [num_rows], device memory
  int num_rows = 0;
  const PenaltyEntry* penalties = nullptr;  // device memory (null when no row has entries)
  SampleResult* results = nullptr;          // [num_rows], device memory
  void* scratch = nullptr;                  // SampleScratchBytes(vocab, num_rows), device memory
};

// Device scratch the launch needs, per row: a list of candidates too large for shared memory
// (vocab × 8 bytes) and the penalized copy of rows with penalties (vocab × 4), 256-byte aligned;
// about num_rows × vocab × 12 bytes. Reusable by launches ordered on the same stream.
size_t SampleScratchBytes(int vocab, int num_rows);

// Samples every row of `p` (one CTA each). Invalid sizes return cudaErrorInvalidValue.
// Capturable in a CUDA graph (no allocation, no synchronisation).
cudaError_t LaunchSample(const SampleBatchParams& p, cudaStream_t stream);

// splitmix64's finalizer and the 53 random bits of UniformDraw(seed, index) (engine/sampler.cc):
// UniformDraw(seed, index) == UniformDrawBits(seed, index) * 2^-53, bit for bit on both sides.
__host__ __device__ inline uint64_t SplitMix64Finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

__host__ __device__ inline uint64_t UniformDrawBits(uint64_t seed, uint64_t index) {
  const uint64_t state = SplitMix64Finalize(seed) + (index + 1) * 0x9E3779B97F4A7C15ULL;
  return SplitMix64Finalize(state) >> 11;
}

}  // namespace tandem::engine::cuda
