// A request as the engine tracks it between steps.
//
// Thread safety: owned by the engine thread; only `stream` is shared with the caller.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "tandem/block_hash.h"
#include "tandem/engine.h"
#include "tandem/ids.h"

namespace tandem::engine {

struct Sequence {
  RequestId id;
  GenerateRequest request;
  std::shared_ptr<OutputStream> stream;
  uint64_t sampling_seed = 0;  // The request's seed, or one the engine drew for it.
  uint64_t hash_seed = 0;      // Block hash seed: model identity plus cache_salt.

  // The prompt followed by every token generated so far.
  std::vector<int32_t> tokens;
  int num_prompt = 0;
  // Tokens whose KV is in `blocks` (a prefix of `tokens`).
  int num_computed = 0;
  std::vector<BlockId> blocks;
  // Chained hashes of the full blocks of `tokens` computed so far; they depend on the tokens
  // only, so they survive preemption.
  std::vector<BlockHash> hashes;
  // Leading blocks already published in the pool's prefix index (or matched from it).
  int num_registered = 0;

  int cached_prompt_tokens = 0;  // Prompt tokens the first admission found in the cache.
  int prompt_logits_rows = 0;    // Prompt positions whose logits were collected (kAll).
  std::vector<float> prompt_logits;
  bool admitted_once = false;
  std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();
  double queue_seconds = 0;      // From `submitted` to the first admission.
  bool tiers_checked = false;    // its prefix was looked up on the host and disk tiers
  // Disaggregated decode: whether the prompt's KV is still to be pulled from request.kv_source
  // (cleared once pulled, or given up on: then it is computed here).
  bool pull_wanted = false;
  bool kv_recomputed = false;  // Its source failed: the prompt is computed here.
  Status source_error;         // Why request.kv_source cannot be used, found when it was submitted.

  int num_output() const { return static_cast<int>(tokens.size()) - num_prompt; }
  int num_pending() const { return static_cast<int>(tokens.size()) - num_computed; }
};

}  // namespace tandem::engine
