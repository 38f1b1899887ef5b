// The mock backend's timing model: how long the cuda backend takes for one engine step, as a
// function of the step's shape, with coefficients fitted to measured GPU runs
// (bench/mock_profile_fit.py over bench/results/engine_gpu.json).
//
//   prefill part = prefill_per_token_us · tokens + prefill_per_token_context_ns · Σ tokens ×
//   context decode part  = decode_per_seq_us · seqs + decode_per_context_token_ns · Σ context step
//   = the larger fixed cost of the kinds present + both parts
//
// A step reads the weights once whatever it holds, so a mixed step pays one fixed cost.
//
// Thread safety: value types and pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "engine/model_runner.h"
#include "tandem/status.h"

namespace tandem::engine::mock {

// Defaults: Llama-3.1-8B, bf16, cuda backend on one H200
// (bench/results/mock_profile_llama-3.1-8b_h200.json; within 2% of every measured row but two).
struct MockProfile {
  std::string name = "llama-3.1-8b on NVIDIA H200 (cuda backend, bf16)";
  double prefill_fixed_ms = 2.198;               // Per step that prefills anything.
  double prefill_per_token_us = 23.396;          // Per prompt token computed (GEMMs).
  double prefill_per_token_context_ns = 1.8154;  // Per prompt token per token it attends to.
  double decode_fixed_ms = 4.8914;               // Per step that decodes anything (weights read).
  double decode_per_seq_us = 6.0358;             // Per decoding sequence.
  double decode_per_context_token_ns = 45.417;   // Per token of KV a decoding sequence reads.
};

// Reads a profile from a JSON object with the fields above (`source` and other keys starting
// with "_" are ignored as notes). A field left out keeps its default; an unknown key, a
// non-number or a negative value is an error naming it.
StatusOr<MockProfile> LoadMockProfile(const std::string& path);
StatusOr<MockProfile> ParseMockProfile(const std::string& json_text);

// What the model prices in a step.
struct StepShape {
  int64_t prefill_tokens = 0;        // Tokens of prompt chunks (steps of more than one token).
  double prefill_token_context = 0;  // Σ over those tokens of the context each attends to.
  int64_t decode_seqs = 0;           // Sequences running one token.
  int64_t decode_context = 0;        // Σ of their context lengths (KV tokens read).
};

// A step of one token is priced as decode (a one-token prompt chunk costs the same), a longer
// one as prefill; token i of a chunk starting at p attends to p + i + 1 tokens.
StepShape ShapeOf(std::span<const SequenceStep> batch);

// Seconds of GPU time the profile predicts for a step of this shape (0 for an empty one).
double StepSeconds(const MockProfile& profile, const StepShape& shape);

}  // namespace tandem::engine::mock
