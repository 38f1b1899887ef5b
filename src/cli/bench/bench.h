// `tandem bench`: every flag in one options struct, and the run of a whole invocation (model
// discovery, one run per request rate, tables, JSON, plots, exit code).
//
// Thread safety: RunBench runs on the calling thread; `stop` may be set from a signal handler.
#pragma once

#include <atomic>
#include <optional>
#include <string>

#include "cli/bench/dataset.h"

namespace tandem::bench {

struct BenchOptions {
  DatasetOptions dataset;
  // The server; "/v1" is added to its path.
  std::string base_url = "http://127.0.0.1:8000";
  // Empty: the first model GET /v1/models lists.
  std::string model;
  // Empty: $TANDEM_API_KEY, then $OPENAI_API_KEY; sent as "Authorization: Bearer".
  std::string api_key;
  // "completions" | "chat"; empty: chat for sharegpt, completions for token-id datasets.
  std::string endpoint;
  // Token ids stay below this; unset: the model's vocab_size from GET /v1/models, else 32000.
  std::optional<int> vocab_size;
  // Requests per second ("inf": all at once); unset: the trace's timestamps, or inf.
  std::string request_rate;
  // "1,2,4,8": one run per rate (instead of --request-rate).
  std::string request_rates;
  // Gamma shape of the gaps between arrivals; 1 is Poisson.
  double burstiness = 1.0;
  // Divides trace time.
  double speedup = 1.0;
  // At most this many requests in flight (closed loop); 0 for no limit.
  int max_concurrency = 0;
  // Each run stops this many seconds after it starts (the trace is cut, requests in flight are
  // cancelled); unset: when every request has ended.
  std::optional<double> duration_s;
  // A request not complete after this fails with kind "timeout".
  double request_timeout_s = 600;
  // A connection not made within this fails its request with kind "connect".
  double connect_timeout_s = 10;
  // "ttft:MS,tpot:MS[,e2e:MS]": goodput counts requests meeting all of them; empty: no goodput.
  std::string goodput;
  // Write the JSON report here.
  std::string json_out;
  // Write PNG plots into this folder.
  std::string plots_dir;
  // Seeds prompts, lengths and arrivals.
  uint64_t seed = 0;
};

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // A request failed, or the server or plots did.
inline constexpr int kExitUsage = 2;   // Bad flags or input files.
inline constexpr int kExitInterrupted = 130;

// Runs the benchmark. Tables go to stdout, warnings and errors (one line each) to stderr; what
// completed is reported even when the run fails or is interrupted.
int RunBench(const BenchOptions& options, const std::atomic<bool>* stop);

}  // namespace tandem::bench
