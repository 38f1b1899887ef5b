// The figures of a benchmark run, as pure functions over what each request recorded (times in
// seconds from the request's send), so every figure can be tested on hand-made timestamps.
//
// Definitions (those of vLLM's benchmark and DistServe):
//   TTFT  send -> first chunk carrying generated text;
//   ITL   the gaps between successive chunks carrying text;
//   TPOT  (E2E - TTFT) / (output tokens - 1), for requests of 2 or more output tokens;
//   E2E   send -> the end of the stream;
//   goodput  completed requests meeting every given SLO, per second of the run.
//
// Thread safety: pure functions over values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem::bench {

// What one request recorded.
struct RequestRecord {
  size_t index = 0;
  // When the arrival process released it, and when it was sent (they differ when
  // --max-concurrency made it wait), in seconds from the start of the run.
  double scheduled_s = 0;
  double start_s = 0;
  bool sent = false;
  // Usage from the server when it reported it, else the dataset's length and the chunks counted.
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  // usage.prompt_tokens_details.cached_tokens; -1 when the server did not report it.
  int64_t cached_tokens = -1;
  // When each chunk carrying text arrived, in seconds from the send.
  std::vector<double> content_s;
  // When the stream ended (or failed), in seconds from the send.
  double end_s = 0;
  // Empty for a completed request; else its kind (see ErrorKind*) and a message.
  std::string error_kind;
  std::string error_message;

  bool completed() const { return sent && error_kind.empty(); }
  // Cut by Ctrl-C or --duration: neither completed nor failed.
  bool cancelled() const { return error_kind == "cancelled"; }
  bool failed() const { return !error_kind.empty() && !cancelled(); }
};

// Per-request figures derived from a record. Unset when the request has none (no text chunk, or
// a single output token for TPOT).
struct RequestTimings {
  std::optional<double> ttft_s;
  std::optional<double> tpot_s;
  std::vector<double> itl_s;
  double e2e_s = 0;
};
RequestTimings ComputeTimings(const RequestRecord& record);

// Mean and percentiles (linear interpolation between closest ranks, numpy's default) of a set
// of values; count 0 leaves the others unset.
struct LatencyStats {
  size_t count = 0;
  std::optional<double> mean, p50, p90, p99;
};
LatencyStats Summarize(std::vector<double> values);
// The p-th percentile (0..100) of sorted, non-empty `values`.
double Percentile(std::span<const double> sorted, double p);

// Service-level objectives for goodput, in milliseconds; unset ones are not checked.
struct SloOptions {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
  std::optional<double> e2e_ms;
  bool any() const { return ttft_ms || tpot_ms || e2e_ms; }
};
// "ttft:MS,tpot:MS[,e2e:MS]" (any subset, any order).
StatusOr<SloOptions> ParseSlo(std::string_view text);
// A request without a TTFT fails a TTFT objective; one without a TPOT (a single output token)
// meets a TPOT objective.
bool MeetsSlo(const RequestTimings& timings, const SloOptions& slo);

struct RunSummary {
  int64_t completed = 0;
  int64_t failed = 0;
  int64_t cancelled = 0;
  int64_t not_sent = 0;
  double duration_s = 0;
  double request_throughput = 0;  // Completed requests per second.
  double output_throughput = 0;   // Output tokens of completed requests per second.
  std::optional<double> goodput;  // Set when an SLO was given.
  int64_t total_prompt_tokens = 0;
  int64_t total_output_tokens = 0;
  // Σ cached / Σ prompt tokens over completed requests that reported cached tokens; unset when
  // none did.
  std::optional<double> cached_prompt_tokens_fraction;
  LatencyStats ttft_ms, tpot_ms, itl_ms, e2e_ms;
  std::map<std::string, int64_t> errors;  // Failed requests by kind.
};

// The summary of a run of `duration_s` seconds.
RunSummary SummarizeRun(std::span<const RequestRecord> records, double duration_s,
                        const SloOptions& slo);

}  // namespace tandem::bench
