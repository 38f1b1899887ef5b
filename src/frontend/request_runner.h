// RequestRunner: runs one request on the workers, apart from its text. It routes the request
// (WorkerPool; the router sees the prompt's block hashes), opens the Worker.Generate stream,
// passes each message on, and replaces a worker that cannot be reached, or refuses the call as
// draining, before it answered anything (up to three workers in all: the client sees nothing of
// it). When the pool gives up on the request (its worker went quiet, no progress within the
// deadline, the frontend's drain deadline) the call is cancelled and the owner hears the error.
// It keeps the serving metrics that belong to the call (queue time, time to first token,
// inter-token latency, routing decisions, how the prompt was prefilled) and tells the router when
// the prompt is prefilled.
//
// Disaggregation (ARCHITECTURE §1): the runner first picks the worker that will decode (among
// aggregated and decode workers). The prompt is prefilled there too (the "local" path) when
// the part of it that worker does not cache is shorter than local_prefill_tokens, when no
// prefill worker is up, when max_tokens is 1, or when the prefill worker chosen has more
// prefill work queued than max_prefill_queue_tokens. Otherwise (the "remote" path) a prefill
// worker, chosen by KV overlap and load, prefills it: its first token goes to the owner at once,
// and the decode worker is then sent the prompt plus that token with the prefill worker's KV
// handle, pulls the KV, releases the lease and streams the rest. A prefill worker that fails
// before its first token hands the request to the decode worker whole (local); one that fails
// after it, or a source the decode worker cannot use, makes the decode worker recompute the
// prompt ("recomputed") — the owner sees one stream in every case.
//
// Generation (text, stop strings) owns one; migration to another worker will take the same
// place.
//
// Thread safety: everything after Start runs on the Executor given to Start, which must run tasks
// one at a time in order (an Asio strand); Stop must be called there too.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frontend/metrics.h"
#include "frontend/worker_client.h"
#include "frontend/worker_pool.h"
#include "tandem/block_hash.h"
#include "tandem/status.h"
#include "tandem/v1/worker.pb.h"

namespace tandem::frontend {

// Conditional disaggregation (see above).
struct DisaggregationOptions {
  int64_t local_prefill_tokens = 512;
  // 0 (the default): no limit. Measured on mock clusters (bench/README.md), sending overflow
  // to the decode workers brings back the interference P/D removes: off until a rule that also
  // weighs the decode workers' load.
  int64_t max_prefill_queue_tokens = 0;
};

// Where a prompt is prefilled, decided once its decode worker is chosen: kLocal there, kRemote on
// the prefill worker.
enum class PrefillPlace { kLocal, kRemote };
struct PrefillDecision {
  int64_t prompt_tokens = 0;
  int64_t decode_cached_tokens = 0;  // The prompt's leading tokens the decode worker caches.
  size_t prefill_workers_up = 0;
  int max_tokens = 0;
};
// Before a prefill worker is chosen: remote unless the uncached part is short, no prefill worker
// is up, or the first token is all the request wants.
PrefillPlace ChoosePrefillPlace(const DisaggregationOptions& options,
                                const PrefillDecision& request);
// Once one is chosen: whether its queued prefill work (before this request) admits another.
bool PrefillQueueAdmits(const DisaggregationOptions& options, int64_t queued_prefill_tokens);

struct RunnerInput {
  std::string request_id;
  std::vector<int32_t> prompt_ids;
  std::vector<BlockHash> block_hashes;  // The prompt's full blocks (the cluster's seed).
  v1::SamplingParams sampling;          // max_tokens set.
  int block_size = 16;                  // The cluster's.
  std::chrono::steady_clock::time_point arrival;
};

class RequestRunner : public std::enable_shared_from_this<RequestRunner> {
 public:
  using Executor = std::function<void(std::function<void()>)>;
  struct Callbacks {
    // Each message from the worker, in order.
    std::function<void(const v1::GenerateResponse&)> on_response;
    // Once, last (never after Stop): the call ended; OK or the error that ended it.
    std::function<void(const Status&)> on_done;
  };

  // UNAVAILABLE (nothing started) when no worker is up.
  static StatusOr<std::shared_ptr<RequestRunner>> Start(WorkerPool* pool, FrontendMetrics* metrics,
                                                        const DisaggregationOptions& options,
                                                        RunnerInput input, Executor executor,
                                                        Callbacks callbacks);

  // The owner is done with the request (a stop string, the client left): cancels the call on
  // the worker, which frees the request's blocks; no callback runs after this.
  void Stop();
  // The worker that has the request now.
  const std::string& worker_address() const { return slot_.address; }

 private:
  enum class Stage {
    kWhole,    // One worker prefills and decodes.
    kPrefill,  // A prefill worker prefills; decode_slot_ waits for its KV handle.
    kDecode,   // The decode worker, with the prompt and first token (and the KV handle).
  };

  RequestRunner(WorkerPool* pool, FrontendMetrics* metrics, const DisaggregationOptions& options,
                RunnerInput input, Executor executor, Callbacks callbacks);
  // Routes the request (both stages' workers when its prefill goes remote) and starts the call.
  Status Route();
  // A route slot among prefill workers or among those that decode; nullopt when none is up.
  std::optional<RouteSlot> RouteTo(bool prefill);
  bool WantsRemotePrefill(const RouteSlot& decode) const;
  void StartCall(v1::GenerateRequest request);
  v1::GenerateRequest BaseRequest() const;
  // The prefill worker is done (or failed): the decode worker takes the request.
  void StartDecode();
  void OnResponse(const v1::GenerateResponse& response);
  void OnPrefillResponse(const v1::GenerateResponse& response);
  // Passes a message to the owner, with the metrics that go with it.
  void Deliver(const v1::GenerateResponse& response);
  void OnDone(const grpc::Status& status);
  void OnPrefillDone(const grpc::Status& status);
  // The pool gave up on the request (`prefill`: on its prefill worker's slot).
  void Abort(const Status& status, bool prefill);
  void Done(const Status& status);
  // Unpins a KV lease the decode worker will not pull (the request ended first).
  void ReleaseLease();

  WorkerPool* const pool_;
  FrontendMetrics* const metrics_;
  const DisaggregationOptions options_;
  const RunnerInput input_;
  Executor executor_;
  Callbacks callbacks_;  // Dropped once done or stopped.
  Stage stage_ = Stage::kWhole;
  RouteSlot slot_;         // The worker of the call in progress.
  RouteSlot decode_slot_;  // kPrefill: the decode worker, waiting.
  // kDecode: the prefill worker whose lease the decode worker pulls.
  std::shared_ptr<v1::Worker::Stub> prefill_stub_;
  std::string prefill_address_;
  std::shared_ptr<GenerateCall> call_;
  std::optional<v1::GenerateRequest> decode_request_;  // kDecode: what rerouting resends.
  // From the prefill worker: its first token, its handle, and whether that token ended it.
  std::optional<int32_t> first_token_;
  std::optional<v1::KvHandle> kv_handle_;
  bool prefill_finished_request_ = false;
  bool done_ = false;
  // Workers tried: a worker that goes away before answering anything is replaced, up to
  // kMaxAttempts in all.
  static constexpr int kMaxAttempts = 3;
  int attempts_ = 0;
  bool any_response_ = false;  // From the current call.
  bool prefill_counted_ = false;
  bool queue_time_observed_ = false;
  std::chrono::steady_clock::time_point call_start_;
  std::optional<std::chrono::steady_clock::time_point> last_token_;
};

}  // namespace tandem::frontend
