#include "frontend/request_runner.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "common/logging.h"
#include "common/status_macros.h"

namespace tandem::frontend {

StatusOr<std::shared_ptr<RequestRunner>> RequestRunner::Start(WorkerPool* pool,
                                                              FrontendMetrics* metrics,
                                                              RunnerInput input, Executor executor,
                                                              Callbacks callbacks) {
  std::shared_ptr<RequestRunner> r(new RequestRunner(pool, metrics, std::move(input),
                                                     std::move(executor), std::move(callbacks)));
  TANDEM_RETURN_IF_ERROR(r->Route());
  return r;
}

RequestRunner::RequestRunner(WorkerPool* pool, FrontendMetrics* metrics, RunnerInput input,
                             Executor executor, Callbacks callbacks)
    : pool_(pool),
      metrics_(metrics),
      input_(std::move(input)),
      executor_(std::move(executor)),
      callbacks_(std::move(callbacks)) {}

Status RequestRunner::Route() {
  // Weak: the pool's registry holds the callback, and the runner holds its route slot.
  std::weak_ptr<RequestRunner> weak = weak_from_this();
  std::optional<RouteSlot> slot = pool_->Route(
      router::RouteRequest{.block_hashes = input_.block_hashes,
                           .prompt_tokens = static_cast<int64_t>(input_.prompt_ids.size())},
      input_.request_id, [weak](const Status& status) {
        if (auto self = weak.lock()) self->executor_([self, status] { self->Abort(status); });
      });
  if (!slot) return UnavailableError("no worker is available");
  slot_ = std::move(*slot);
  ++attempts_;
  metrics_->CountRoutingDecision(router::RouterModeName(pool_->router().options().mode),
                                 slot_.plan.overlap().blocks());
  v1::GenerateRequest request;
  request.set_request_id(input_.request_id);
  request.mutable_prompt_tokens()->Add(input_.prompt_ids.begin(), input_.prompt_ids.end());
  *request.mutable_sampling() = input_.sampling;
  metrics_->active_requests().Increment();
  spdlog::debug(
      "request routed request_id={} worker={} prompt_tokens={} cached_blocks={} attempt={}",
      input_.request_id, slot_.address, input_.prompt_ids.size(), slot_.plan.overlap().blocks(),
      attempts_);
  call_start_ = std::chrono::steady_clock::now();
  // The callbacks hold the runner until the call is done; they run on gRPC threads and only hop
  // onto the executor.
  auto self = shared_from_this();
  call_ = StartGenerate(
      *slot_.stub, std::move(request),
      {.on_response =
           [self](v1::GenerateResponse&& r) {
             self->executor_([self, r = std::move(r)] { self->OnResponse(r); });
           },
       .on_done =
           [self](const grpc::Status& s) { self->executor_([self, s] { self->OnDone(s); }); }});
  return OkStatus();
}

void RequestRunner::Stop() {
  if (done_) return;
  done_ = true;
  callbacks_ = {};
  if (call_) call_->Cancel();
}

void RequestRunner::Abort(const Status& status) {
  if (done_) return;
  // The pool logged why (a silent worker, no progress, the drain deadline); one line each here
  // would repeat it for every request.
  spdlog::debug("request ended request_id={} worker={} error={}", input_.request_id, slot_.address,
                Quoted(status.ToString()));
  if (call_) call_->Cancel();
  Done(status);
}

void RequestRunner::OnResponse(const v1::GenerateResponse& response) {
  if (done_) return;
  any_response_ = true;
  slot_.in_flight->Touch();
  const auto now = std::chrono::steady_clock::now();
  const int n = response.tokens_size();
  if (!queue_time_observed_ && (n > 0 || response.finished())) {
    // Time before the worker started it: routing here, then the worker's own queue.
    queue_time_observed_ = true;
    metrics_->ObserveQueueTime(std::chrono::duration<double>(call_start_ - input_.arrival).count() +
                               response.queue_seconds());
  }
  if (n > 0) {
    if (!last_token_) {
      metrics_->ObserveTimeToFirstToken(
          std::chrono::duration<double>(now - input_.arrival).count());
      slot_.plan.PrefillDone();  // The router no longer counts the prompt as queued work.
    } else {
      const double gap = std::chrono::duration<double>(now - *last_token_).count() / n;
      for (int i = 0; i < n; ++i) metrics_->ObserveInterTokenLatency(gap);
    }
    last_token_ = now;
  }
  metrics_->AddGeneratedTokens(n);
  callbacks_.on_response(response);
}

void RequestRunner::OnDone(const grpc::Status& status) {
  pool_->Release(slot_);
  metrics_->active_requests().Decrement();
  const bool unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE && !any_response_;
  if (unreachable) pool_->MarkDown(slot_.id);
  if (done_) return;
  // The worker went away (or was draining) before it answered anything: nothing reached the
  // client, so another worker takes the request.
  if (unreachable && attempts_ < kMaxAttempts) {
    spdlog::info("request rerouted request_id={} worker={} error={}", input_.request_id,
                 slot_.address, Quoted(status.error_message()));
    const Status routed = Route();
    if (!routed.ok()) Done(routed);
    return;
  }
  if (status.ok()) {
    Done(OkStatus());
    return;
  }
  const Status error(static_cast<StatusCode>(status.error_code()), status.error_message());
  spdlog::warn("request failed on worker request_id={} worker={} error={}", input_.request_id,
               slot_.address, Quoted(error.ToString()));
  Done(error);
}

void RequestRunner::Done(const Status& status) {
  done_ = true;
  Callbacks callbacks = std::move(callbacks_);
  callbacks_ = {};
  callbacks.on_done(status);
}

}  // namespace tandem::frontend
