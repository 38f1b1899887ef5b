// RequestRunner: runs one request on the workers, apart from its text. It routes the request
// (WorkerPool; the router sees the prompt's block hashes), opens the Worker.Generate stream,
// passes each message on, and replaces a worker that cannot be reached, or refuses the call as
// draining, before it answered anything (up to three workers in all: the client sees nothing of
// it). When the pool gives up on the request (its worker went quiet, no progress within the
// deadline, the frontend's drain deadline) the call is cancelled and the owner hears the error.
// It keeps the serving metrics that belong to the call (queue time, time to first token,
// inter-token latency, routing decisions) and tells the router when the prompt is prefilled.
//
// Generation (text, stop strings) owns one; later runners (disaggregated prefill then decode,
// migration to another worker) take the same place.
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

struct RunnerInput {
  std::string request_id;
  std::vector<int32_t> prompt_ids;
  std::vector<BlockHash> block_hashes;  // The prompt's full blocks (the cluster's seed).
  v1::SamplingParams sampling;          // max_tokens set.
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
                                                        RunnerInput input, Executor executor,
                                                        Callbacks callbacks);

  // The owner is done with the request (a stop string, the client left): cancels the call on
  // the worker, which frees the request's blocks; no callback runs after this.
  void Stop();
  // The worker that has the request now.
  const std::string& worker_address() const { return slot_.address; }

 private:
  RequestRunner(WorkerPool* pool, FrontendMetrics* metrics, RunnerInput input, Executor executor,
                Callbacks callbacks);
  Status Route();
  void OnResponse(const v1::GenerateResponse& response);
  void OnDone(const grpc::Status& status);
  // The pool gave up on the request.
  void Abort(const Status& status);
  void Done(const Status& status);

  WorkerPool* const pool_;
  FrontendMetrics* const metrics_;
  const RunnerInput input_;
  Executor executor_;
  Callbacks callbacks_;  // Dropped once done or stopped.
  RouteSlot slot_;
  std::shared_ptr<GenerateCall> call_;
  bool done_ = false;
  // Workers tried: a worker that goes away before answering anything is replaced, up to
  // kMaxAttempts in all.
  static constexpr int kMaxAttempts = 3;
  int attempts_ = 0;
  bool any_response_ = false;
  bool queue_time_observed_ = false;
  std::chrono::steady_clock::time_point call_start_;
  std::optional<std::chrono::steady_clock::time_point> last_token_;
};

}  // namespace tandem::frontend
