#include "frontend/generation.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include <utility>

#include "common/logging.h"
#include "common/status_macros.h"

namespace tandem::frontend {

const char* FinishReasonName(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    default:
      return "abort";
  }
}

StatusOr<std::shared_ptr<Generation>> Generation::Start(const GenerationContext& context,
                                                        GenerationInput input, Executor executor,
                                                        std::shared_ptr<GenerationSink> sink) {
  if (input.prompt_ids.empty()) return InvalidArgumentError("the prompt is empty");
  std::shared_ptr<Generation> g(
      new Generation(context, std::move(input), std::move(executor), std::move(sink)));
  TANDEM_RETURN_IF_ERROR(g->Route());
  return g;
}

Status Generation::Route() {
  // Weak: the pool's registry holds the callback, and the Generation holds its route slot.
  std::weak_ptr<Generation> weak = weak_from_this();
  std::optional<RouteSlot> slot =
      context_.pool->Acquire(input_.request_id, [weak](const Status& status) {
        if (auto self = weak.lock()) self->executor_([self, status] { self->Abort(status); });
      });
  if (!slot) return UnavailableError("no worker is available");
  slot_ = std::move(*slot);
  if (Status s = CheckPrompt(); !s.ok()) {
    context_.pool->Release(slot_);
    return s;
  }
  ++attempts_;
  v1::GenerateRequest request;
  request.set_request_id(input_.request_id);
  request.mutable_prompt_tokens()->Add(input_.prompt_ids.begin(), input_.prompt_ids.end());
  *request.mutable_sampling() = input_.sampling;
  context_.metrics->active_requests().Increment();
  spdlog::debug("request routed request_id={} worker={} prompt_tokens={} attempt={}",
                input_.request_id, slot_.address, input_.prompt_ids.size(), attempts_);
  call_start_ = std::chrono::steady_clock::now();
  // The callbacks hold the Generation until the call is done; they run on gRPC threads and
  // only hop onto the executor.
  auto g = shared_from_this();
  call_ = GenerateCall::Start(
      *slot_.stub, request,
      {.on_response =
           [g](v1::GenerateResponse&& r) {
             g->executor_([g, r = std::move(r)] { g->OnResponse(r); });
           },
       .on_done = [g](const grpc::Status& s) { g->executor_([g, s] { g->OnDone(s); }); }});
  return OkStatus();
}

Status Generation::CheckPrompt() {
  const v1::WorkerInfo& info = slot_.info;
  if (info.vocab_size() > 0) {
    for (int32_t id : input_.prompt_ids) {
      if (id < 0 || id >= info.vocab_size()) {
        return InvalidArgumentError("token id " + std::to_string(id) +
                                    " is outside the vocabulary (size " +
                                    std::to_string(info.vocab_size()) + ")");
      }
    }
  }
  const int64_t prompt_len = static_cast<int64_t>(input_.prompt_ids.size());
  const int64_t context_len = info.max_model_len();
  if (context_len <= 0) return OkStatus();
  if (prompt_len >= context_len) {
    return InvalidArgumentError(
        "This model's maximum context length is " + std::to_string(context_len) +
        " tokens. However, your prompt has " + std::to_string(prompt_len) +
        " tokens, which leaves no room for a completion. Please reduce the prompt.");
  }
  if (!input_.sampling.has_max_tokens()) {
    input_.sampling.set_max_tokens(static_cast<int32_t>(context_len - prompt_len));
  } else if (prompt_len + input_.sampling.max_tokens() > context_len) {
    return InvalidArgumentError("This model's maximum context length is " +
                                std::to_string(context_len) + " tokens. However, you requested " +
                                std::to_string(prompt_len + input_.sampling.max_tokens()) +
                                " tokens (" + std::to_string(prompt_len) + " in the prompt, " +
                                std::to_string(input_.sampling.max_tokens()) +
                                " for the completion). Please reduce the prompt or max_tokens.");
  }
  return OkStatus();
}

Generation::Generation(const GenerationContext& context, GenerationInput input, Executor executor,
                       std::shared_ptr<GenerationSink> sink)
    : context_(context),
      input_(std::move(input)),
      executor_(std::move(executor)),
      sink_(std::move(sink)),
      text_(context.model->tokenizer(), input_.skip_special_tokens, input_.prompt_ids,
            input_.stop) {}

void Generation::Cancel() {
  if (finished_) return;
  finished_ = true;
  sink_.reset();
  if (call_) call_->Cancel();
}

void Generation::Abort(const Status& status) {
  if (finished_) return;
  // The pool logged why (a silent worker, no progress, the drain deadline); one line each here
  // would repeat it for every request.
  spdlog::debug("request ended request_id={} worker={} error={}", input_.request_id, slot_.address,
                Quoted(status.ToString()));
  if (call_) call_->Cancel();
  GenerationResult result;
  result.status = status;
  result.finish_reason = v1::FINISH_REASON_ERROR;
  Finish(std::move(result));
}

void Generation::OnResponse(const v1::GenerateResponse& response) {
  if (finished_) return;
  any_response_ = true;
  slot_.in_flight->Touch();
  cached_prompt_tokens_ = std::max(cached_prompt_tokens_, response.cached_prompt_tokens());
  const auto now = std::chrono::steady_clock::now();
  const int n = response.tokens_size();
  if (!queue_time_observed_ && (n > 0 || response.finished())) {
    // Time before the worker started it: routing here, then the worker's own queue.
    queue_time_observed_ = true;
    context_.metrics->ObserveQueueTime(
        std::chrono::duration<double>(call_start_ - input_.arrival).count() +
        response.queue_seconds());
  }
  if (n > 0) {
    if (!last_token_) {
      context_.metrics->ObserveTimeToFirstToken(
          std::chrono::duration<double>(now - input_.arrival).count());
    } else {
      const double gap = std::chrono::duration<double>(now - *last_token_).count() / n;
      for (int i = 0; i < n; ++i) context_.metrics->ObserveInterTokenLatency(gap);
    }
    last_token_ = now;
  }
  GenerationDelta delta;
  for (const v1::GeneratedToken& t : response.tokens()) {
    delta.text_offsets.push_back(text_.emitted_bytes());
    delta.tokens.push_back(t);
    ++completion_tokens_;
    delta.text += text_.Push(t.token());
    if (text_.stopped()) break;
  }
  context_.metrics->AddGeneratedTokens(static_cast<double>(delta.tokens.size()));
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  if (text_.stopped()) {
    reason = v1::FINISH_REASON_STOP;
    call_->Cancel();  // The worker stops and frees the request's blocks.
  } else if (response.finished()) {
    reason = response.finish_reason();
    delta.text += text_.Finish();
  }
  if (!delta.text.empty() || !delta.tokens.empty()) sink_->OnDelta(std::move(delta));
  if (reason == v1::FINISH_REASON_UNSPECIFIED) return;
  GenerationResult result;
  result.finish_reason = reason;
  // This side did not cancel it: the worker stopped it (draining, shutting down) or failed.
  if (reason == v1::FINISH_REASON_CANCELLED) {
    result.status =
        UnavailableError("worker " + slot_.address + " stopped the request (it is shutting down)");
  } else if (reason == v1::FINISH_REASON_ERROR) {
    result.status = InternalError("worker " + slot_.address + " failed the request");
  }
  if (!result.status.ok()) {
    spdlog::warn("request failed on worker request_id={} worker={} error={}", input_.request_id,
                 slot_.address, Quoted(result.status.ToString()));
  }
  Finish(std::move(result));
}

void Generation::OnDone(const grpc::Status& status) {
  context_.pool->Release(slot_);
  context_.metrics->active_requests().Decrement();
  const bool unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE && !any_response_;
  if (unreachable) context_.pool->MarkDown(slot_.id);
  if (finished_) return;
  // The worker went away (or was draining) before it answered anything: nothing reached the
  // client, so another worker takes the request.
  if (unreachable && attempts_ < kMaxAttempts) {
    spdlog::info("request rerouted request_id={} worker={} error={}", input_.request_id,
                 slot_.address, Quoted(status.error_message()));
    const Status routed = Route();
    if (routed.ok()) return;
    GenerationResult result;
    result.status = routed;
    result.finish_reason = v1::FINISH_REASON_ERROR;
    Finish(std::move(result));
    return;
  }
  GenerationResult result;
  if (status.ok()) {
    // The stream ended without a final message: end the text as it stands.
    GenerationDelta delta;
    delta.text = text_.Finish();
    if (!delta.text.empty()) sink_->OnDelta(std::move(delta));
    result.finish_reason = v1::FINISH_REASON_STOP;
  } else {
    const StatusCode code = static_cast<StatusCode>(status.error_code());
    result.status = Status(code, status.error_message());
    result.finish_reason = v1::FINISH_REASON_ERROR;
    spdlog::warn("request failed on worker request_id={} worker={} error={}", input_.request_id,
                 slot_.address, Quoted(result.status.ToString()));
  }
  Finish(std::move(result));
}

void Generation::Finish(GenerationResult result) {
  finished_ = true;
  context_.metrics->ObserveRequestDuration(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - input_.arrival).count());
  result.prompt_tokens = prompt_tokens();
  result.completion_tokens = completion_tokens_;
  result.cached_prompt_tokens = cached_prompt_tokens_;
  std::shared_ptr<GenerationSink> sink = std::move(sink_);
  sink->OnFinish(result);
}

}  // namespace tandem::frontend
