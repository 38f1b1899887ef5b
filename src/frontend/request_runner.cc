#include "frontend/request_runner.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "common/logging.h"
#include "common/status_macros.h"

namespace tandem::frontend {

StatusOr<std::shared_ptr<RequestRunner>> RequestRunner::Start(WorkerPool* pool,
                                                              FrontendMetrics* metrics,
                                                              const DisaggregationOptions& options,
                                                              RunnerInput input, Executor executor,
                                                              Callbacks callbacks) {
  std::shared_ptr<RequestRunner> r(new RequestRunner(pool, metrics, options, std::move(input),
                                                     std::move(executor), std::move(callbacks)));
  TANDEM_RETURN_IF_ERROR(r->Route());
  return r;
}

RequestRunner::RequestRunner(WorkerPool* pool, FrontendMetrics* metrics,
                             const DisaggregationOptions& options, RunnerInput input,
                             Executor executor, Callbacks callbacks)
    : pool_(pool),
      metrics_(metrics),
      options_(options),
      input_(std::move(input)),
      executor_(std::move(executor)),
      callbacks_(std::move(callbacks)) {}

std::optional<RouteSlot> RequestRunner::RouteTo(bool prefill) {
  // Weak: the pool's registry holds the callback, and the runner holds its route slot.
  std::weak_ptr<RequestRunner> weak = weak_from_this();
  std::optional<RouteSlot> slot = pool_->Route(
      router::RouteRequest{.block_hashes = input_.block_hashes,
                           .prompt_tokens = static_cast<int64_t>(input_.prompt_ids.size()),
                           .prefill = prefill},
      input_.request_id, [weak, prefill](const Status& status) {
        if (auto self = weak.lock()) {
          self->executor_([self, status, prefill] { self->Abort(status, prefill); });
        }
      });
  if (slot) {
    metrics_->CountRoutingDecision(router::RouterModeName(pool_->router().options().mode),
                                   slot->plan.overlap().blocks());
  }
  return slot;
}

PrefillPlace ChoosePrefillPlace(const DisaggregationOptions& options,
                                const PrefillDecision& request) {
  if (request.max_tokens <= 1 || request.prefill_workers_up == 0) return PrefillPlace::kLocal;
  const int64_t uncached = request.prompt_tokens - request.decode_cached_tokens;
  return uncached >= options.local_prefill_tokens ? PrefillPlace::kRemote : PrefillPlace::kLocal;
}

bool PrefillQueueAdmits(const DisaggregationOptions& options, int64_t queued_prefill_tokens) {
  return options.max_prefill_queue_tokens <= 0 ||
         queued_prefill_tokens <= options.max_prefill_queue_tokens;
}

bool RequestRunner::WantsRemotePrefill(const RouteSlot& decode) const {
  const PrefillDecision request{
      .prompt_tokens = static_cast<int64_t>(input_.prompt_ids.size()),
      .decode_cached_tokens = int64_t{decode.plan.overlap().device_blocks} * input_.block_size,
      .prefill_workers_up = pool_->num_prefill_up(),
      .max_tokens = input_.sampling.max_tokens()};
  return ChoosePrefillPlace(options_, request) == PrefillPlace::kRemote;
}

v1::GenerateRequest RequestRunner::BaseRequest() const {
  v1::GenerateRequest request;
  request.set_request_id(input_.request_id);
  request.mutable_prompt_tokens()->Add(input_.prompt_ids.begin(), input_.prompt_ids.end());
  *request.mutable_sampling() = input_.sampling;
  return request;
}

Status RequestRunner::Route() {
  // The worker that decodes first: what it caches decides whether the prefill goes elsewhere.
  std::optional<RouteSlot> decode = RouteTo(/*prefill=*/false);
  if (!decode) return UnavailableError("no worker is available");
  ++attempts_;
  if (WantsRemotePrefill(*decode)) {
    std::optional<RouteSlot> prefill = RouteTo(/*prefill=*/true);
    if (prefill && PrefillQueueAdmits(options_, prefill->plan.queued_prefill_tokens())) {
      decode_slot_ = std::move(*decode);
      slot_ = std::move(*prefill);
      stage_ = Stage::kPrefill;
      v1::GenerateRequest request = BaseRequest();
      request.set_prefill_only(true);
      StartCall(std::move(request));
      return OkStatus();
    }
    if (prefill) pool_->Release(*prefill);  // Its queue is too long: prefill locally.
  }
  slot_ = std::move(*decode);
  stage_ = Stage::kWhole;
  StartCall(BaseRequest());
  return OkStatus();
}

void RequestRunner::StartCall(v1::GenerateRequest request) {
  metrics_->active_requests().Increment();
  spdlog::debug(
      "request routed request_id={} worker={} stage={} prompt_tokens={} cached_blocks={} "
      "attempt={}",
      input_.request_id, slot_.address,
      stage_ == Stage::kPrefill  ? "prefill"
      : stage_ == Stage::kDecode ? "decode"
                                 : "whole",
      request.prompt_tokens_size(), slot_.plan.overlap().blocks(), attempts_);
  any_response_ = false;
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
}

void RequestRunner::StartDecode() {
  slot_ = std::move(decode_slot_);
  stage_ = Stage::kDecode;
  v1::GenerateRequest request = BaseRequest();
  if (first_token_) {
    // The prompt and its first token; the decode worker pulls the prompt's KV when it can.
    request.add_prompt_tokens(*first_token_);
    request.mutable_sampling()->set_max_tokens(input_.sampling.max_tokens() - 1);
    if (kv_handle_) {
      v1::KvSource* source = request.mutable_kv_source();
      source->set_peer(prefill_address_);
      *source->mutable_handle() = *kv_handle_;
      slot_.plan.PrefillDone();  // Its prefill is done elsewhere.
    }
  } else {
    stage_ = Stage::kWhole;  // Nothing came of the prefill: the decode worker does it all.
  }
  decode_request_ = request;
  StartCall(std::move(request));
}

void RequestRunner::Stop() {
  if (done_) return;
  done_ = true;
  callbacks_ = {};
  if (call_) call_->Cancel();
}

void RequestRunner::Abort(const Status& status, bool prefill) {
  if (done_) return;
  if (prefill) {
    // Its prefill worker went quiet: the decode worker takes the request (OnPrefillDone).
    if (stage_ == Stage::kPrefill && call_) call_->Cancel();
    return;
  }
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
  if (stage_ == Stage::kPrefill) {
    decode_slot_.in_flight->Touch();  // It waits for this worker, and is not idle.
    OnPrefillResponse(response);
    return;
  }
  Deliver(response);
}

void RequestRunner::OnPrefillResponse(const v1::GenerateResponse& response) {
  v1::GenerateResponse out = response;
  out.clear_kv_handle();
  if (response.tokens_size() > 0 && !first_token_) first_token_ = response.tokens(0).token();
  if (response.finished()) {
    if (response.finish_reason() == v1::FINISH_REASON_STOP) {
      // Its first token ended the request (an end of sequence, a stop token).
      prefill_finished_request_ = true;
      Deliver(out);
      return;
    }
    if (response.finish_reason() == v1::FINISH_REASON_LENGTH && response.has_kv_handle()) {
      kv_handle_ = response.kv_handle();
    }
    // The prefill worker's part is over; the request goes on on the decode worker.
    out.set_finished(false);
    out.set_finish_reason(v1::FINISH_REASON_UNSPECIFIED);
  }
  if (out.tokens_size() > 0) Deliver(out);
}

void RequestRunner::Deliver(const v1::GenerateResponse& response) {
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
    const bool path_known = stage_ != Stage::kPrefill || prefill_finished_request_;
    if (!prefill_counted_ && path_known) {
      prefill_counted_ = true;
      metrics_->CountPrefill(stage_ == Stage::kWhole                   ? "local"
                             : stage_ == Stage::kPrefill               ? "remote"
                             : !kv_handle_ || response.kv_recomputed() ? "recomputed"
                                                                       : "remote");
    }
  }
  metrics_->AddGeneratedTokens(n);
  callbacks_.on_response(response);
}

void RequestRunner::OnDone(const grpc::Status& status) {
  pool_->Release(slot_);
  metrics_->active_requests().Decrement();
  if (stage_ == Stage::kPrefill) {
    OnPrefillDone(status);
    return;
  }
  const bool unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE && !any_response_;
  if (unreachable) pool_->MarkDown(slot_.id);
  if (done_) return;
  // The worker went away (or was draining) before it answered anything: nothing of its part
  // reached the client, so another worker takes it.
  if (unreachable && attempts_ < kMaxAttempts) {
    spdlog::info("request rerouted request_id={} worker={} error={}", input_.request_id,
                 slot_.address, Quoted(status.error_message()));
    if (decode_request_) {
      // After a prefill elsewhere: another decode worker, with the same prompt and KV handle.
      std::optional<RouteSlot> decode = RouteTo(/*prefill=*/false);
      if (!decode) {
        ReleaseLease();
        Done(UnavailableError("no worker is available"));
        return;
      }
      ++attempts_;
      slot_ = std::move(*decode);
      StartCall(*decode_request_);
      return;
    }
    const Status routed = Route();
    if (!routed.ok()) Done(routed);
    return;
  }
  if (!any_response_) ReleaseLease();  // The decode worker never had it (or released it).
  if (status.ok()) {
    Done(OkStatus());
    return;
  }
  const Status error(static_cast<StatusCode>(status.error_code()), status.error_message());
  spdlog::warn("request failed on worker request_id={} worker={} error={}", input_.request_id,
               slot_.address, Quoted(error.ToString()));
  Done(error);
}

void RequestRunner::OnPrefillDone(const grpc::Status& status) {
  const bool unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE && !any_response_;
  if (unreachable) pool_->MarkDown(slot_.id);
  prefill_stub_ = slot_.stub;
  prefill_address_ = slot_.address;
  if (done_ || prefill_finished_request_) {
    pool_->Release(decode_slot_);
    ReleaseLease();
    if (!done_) Done(OkStatus());
    return;
  }
  if (!kv_handle_) {
    spdlog::info("prefill failed, the decode worker prefills request_id={} worker={} error={}",
                 input_.request_id, slot_.address,
                 Quoted(status.ok() ? "no KV handle" : status.error_message()));
  }
  StartDecode();
}

void RequestRunner::ReleaseLease() {
  if (!kv_handle_ || !prefill_stub_) return;
  ReleaseKvLease(prefill_stub_, kv_handle_->lease_id());
  kv_handle_.reset();
}

void RequestRunner::Done(const Status& status) {
  done_ = true;
  Callbacks callbacks = std::move(callbacks_);
  callbacks_ = {};
  callbacks.on_done(status);
}

}  // namespace tandem::frontend
