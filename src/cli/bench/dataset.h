// Workloads for `tandem bench`: what each request asks for and, for traces, when it arrives.
//
// A dataset holds request descriptions, not prompts: a Mooncake trace of 4,000 requests of 40k
// tokens would be 640 MB of token ids, so token prompts are rendered when each request is sent
// (see token_space.h and request_body.h).
//
// Thread safety: pure functions over immutable values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tandem/status.h"

namespace tandem::bench {

enum class DatasetKind { kRandom, kShareGpt, kMooncake, kAzure };

// "random" | "sharegpt" | "mooncake" | "azure".
StatusOr<DatasetKind> ParseDatasetKind(std::string_view name);
std::string_view DatasetKindName(DatasetKind kind);

struct DatasetOptions {
  DatasetKind kind = DatasetKind::kRandom;
  // The trace file (sharegpt, mooncake, azure); unused by random.
  std::string path;
  // random: mean prompt length in tokens.
  int input_len = 1024;
  // random: mean output length; other datasets: replaces the trace's output length when set.
  std::optional<int> output_len;
  // random: lengths are uniform in [L*(1-R), L*(1+R)] (vLLM's --random-range-ratio), R in [0, 1).
  double range_ratio = 0.0;
  // mooncake: tokens per hash id.
  int block_size = 512;
  // How many requests: random makes this many (1000 when unset); traces are cut to it.
  std::optional<int> num_requests;
  // random: seeds the lengths (prompt tokens are seeded at render time from the same seed).
  uint64_t seed = 0;
};

// One request as the dataset describes it.
struct RequestSpec {
  // Arrival in seconds after the trace's first entry; nullopt for datasets without timestamps.
  std::optional<double> timestamp_s;
  // Prompt length in tokens (sharegpt: an estimate from the text).
  int input_len = 0;
  // max_tokens sent with ignore_eos, so the server generates exactly this many.
  int output_len = 0;
  // sharegpt: the user message. Empty for token-id prompts.
  std::string text;
  // mooncake: one id per block of block_size tokens; equal ids mean identical blocks.
  std::vector<int64_t> hash_ids;
};

struct Dataset {
  DatasetKind kind = DatasetKind::kRandom;
  std::vector<RequestSpec> requests;
  // Whether every request has a timestamp (trace datasets), so arrivals follow the trace.
  bool has_timestamps = false;
  // Entries left out (sharegpt conversations without a human turn followed by a gpt turn).
  int skipped = 0;
  // Tokens per hash id (mooncake).
  int block_size = 512;
};

// Validates `options` and builds the dataset. Errors name the flag, or the file, line and cause.
StatusOr<Dataset> LoadDataset(const DatasetOptions& options);

// The loaders LoadDataset dispatches to, one per format (one file each). They read every entry;
// LoadDataset applies num_requests and output_len.
Dataset MakeRandomDataset(const DatasetOptions& options);
StatusOr<Dataset> LoadShareGpt(const std::string& path);
StatusOr<Dataset> LoadMooncake(const std::string& path, int block_size);
StatusOr<Dataset> LoadAzure(const std::string& path);

// Token count of `text` as the sharegpt loader estimates it (about 4 characters a token, at
// least 1), for lengths when no tokenizer is at hand.
int EstimateTokens(std::string_view text);

}  // namespace tandem::bench
