// Token sampling on the CPU, and the counter-based random stream every backend shares.
//
// Processing order (vLLM's): repetition, presence and frequency penalties; greedy argmax when
// temperature is 0; else temperature, min-p, top-k, top-p, then one draw. Logprobs are those of
// the model's raw logits (log-softmax before any processing).
//
// Thread safety: pure functions; `scratch` must not be shared between threads.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tandem/engine.h"
#include "tandem/sampling_params.h"

namespace tandem::engine {

struct SamplingContext {
  const SamplingParams* params = nullptr;
  std::span<const int32_t> prompt_tokens;
  std::span<const int32_t> output_tokens;  // Generated so far; its size is the draw index.
  uint64_t seed = 0;                       // The request's resolved seed.
};

// The uniform draw in [0, 1) for output token number `index` of a request seeded `seed`: a pure
// function of the two (splitmix64-based), so a request's tokens do not depend on the batch, and
// the CUDA sampler reproduces it bit for bit.
double UniformDraw(uint64_t seed, uint64_t index);

// Samples one token from `logits` (one row, vocabulary-sized). `scratch` is reused between calls
// to avoid allocation.
GeneratedToken Sample(std::span<const float> logits, const SamplingContext& ctx,
                      std::vector<float>* scratch);

}  // namespace tandem::engine
