// Per-request sampling parameters, with the semantics of the OpenAI API and vLLM.
//
// Thread safety: value type.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace tandem {

struct SamplingParams {
  // 0 selects greedy decoding (argmax); otherwise logits are divided by it.
  float temperature = 1.0f;
  // Keep the smallest set of most likely tokens whose probability sums to at least top_p (1 = off).
  float top_p = 1.0f;
  // Keep the top_k most likely tokens (0 or negative = off).
  int top_k = 0;
  // Drop tokens whose probability is below min_p times the most likely token's (0 = off).
  float min_p = 0.0f;
  // HF/vLLM repetition penalty over prompt and output tokens (1 = off): positive logits are
  // divided by it, negative ones multiplied.
  float repetition_penalty = 1.0f;
  // OpenAI presence penalty: subtracted once from the logit of every token already generated.
  float presence_penalty = 0.0f;
  // OpenAI frequency penalty: subtracted once per occurrence in the generated tokens.
  float frequency_penalty = 0.0f;
  // Seed of this request's random stream. The same seed gives the same tokens whatever else is
  // in the batch. Without one the engine draws a seed.
  std::optional<uint64_t> seed;
  // Stop after this many generated tokens.
  int max_tokens = 16;
  // Stop when one of these is generated (in addition to the model's eos ids unless ignore_eos).
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // Return this many alternatives with each token's logprob (0 = only the chosen token's
  // logprob when logprobs is set).
  bool logprobs = false;
  int top_logprobs = 0;

  bool greedy() const { return temperature <= 0.0f; }
};

}  // namespace tandem
