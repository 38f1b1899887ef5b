// One run of `tandem bench`: releases the dataset's requests at their arrival offsets (holding
// them while --max-concurrency requests are in flight), streams every response through the HTTP
// client and records each request's timings. Stops when every request has ended, at --duration
// (the rest of the trace is cut and requests in flight are cancelled), or when `stop` is set
// (Ctrl-C). A failed request is recorded, never retried.
//
// Thread safety: RunLoad runs on the calling thread and owns the client while it runs; `stop` may
// be set from a signal handler.
#pragma once

#include <atomic>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cli/bench/dataset.h"
#include "cli/bench/http_client.h"
#include "cli/bench/metrics.h"
#include "cli/bench/progress.h"
#include "cli/bench/request_body.h"

namespace tandem::bench {

struct RunOptions {
  // The request target, e.g. "/v1/completions".
  std::string path = "/v1/completions";
  std::string host_header = "127.0.0.1:8000";
  // Sent as "Authorization: Bearer" when not empty.
  std::string api_key;
  BodyOptions body;
  // At most this many requests in flight; 0 for no limit.
  int max_concurrency = 0;
  // The run ends this many seconds after it starts; unset: when every request has ended.
  std::optional<double> duration_s;
};

struct RunResult {
  // One per request of the dataset, in dataset order (those never sent have sent == false).
  std::vector<RequestRecord> records;
  // From the first release to the last end (or the cut).
  double duration_s = 0;
  bool interrupted = false;       // `stop` was set.
  bool duration_reached = false;  // --duration cut the run.
};

// Error kinds as they appear in reports.
inline constexpr std::string_view kErrorConnect = "connect";
inline constexpr std::string_view kErrorTimeout = "timeout";
inline constexpr std::string_view kErrorIncomplete = "incomplete";
inline constexpr std::string_view kErrorStream = "stream_error";
inline constexpr std::string_view kErrorProtocol = "protocol";
inline constexpr std::string_view kErrorCancelled = "cancelled";
// "http_4xx:404", "http_5xx:503", "http_other:302".
std::string HttpErrorKind(int status);

// `arrivals` holds one release offset (seconds) per request, never decreasing. `progress` may be
// null.
RunResult RunLoad(HttpClient& client, const Dataset& dataset, std::span<const double> arrivals,
                  const RunOptions& options, const std::atomic<bool>* stop, Progress* progress);

}  // namespace tandem::bench
