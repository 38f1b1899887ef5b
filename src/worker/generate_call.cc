#include "worker/generate_call.h"

#include <spdlog/spdlog.h>

#include <optional>
#include <utility>

#include "common/logging.h"
#include "worker/grpc_status.h"
#include "worker/kv_proto.h"
#include "worker/stream_reactor.h"

namespace tandem::worker {
namespace {

using GenerateReactor = StreamReactor<v1::GenerateResponse, GenerateCall>;

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
    case FinishReason::kNone:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

CallOutcome OutcomeOf(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return CallOutcome::kStop;
    case FinishReason::kLength:
      return CallOutcome::kLength;
    case FinishReason::kCancelled:
      return CallOutcome::kCancelled;
    case FinishReason::kError:
    case FinishReason::kNone:
      break;
  }
  return CallOutcome::kError;
}

}  // namespace

GenerateCall::GenerateCall(Deps deps, std::string request_id, RequestId engine_id,
                           std::shared_ptr<OutputStream> stream,
                           std::chrono::steady_clock::time_point arrival,
                           std::function<void()> on_finished)
    : deps_(deps),
      request_id_(std::move(request_id)),
      engine_id_(engine_id),
      stream_(std::move(stream)),
      arrival_(arrival),
      on_finished_(std::move(on_finished)) {}

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerateCall::Start(
    Deps deps, std::string request_id, RequestId engine_id, std::shared_ptr<OutputStream> stream,
    std::chrono::steady_clock::time_point arrival, Hooks hooks) {
  auto call = std::make_shared<GenerateCall>(deps, std::move(request_id), engine_id, stream,
                                             arrival, std::move(hooks.on_finished));
  auto* reactor = new GenerateReactor(call, std::move(hooks.on_done));
  call->reactor_ = reactor;  // Before the first wake: Pump reads it on the dispatcher thread.
  // Weak: the stream (held by the engine) must not keep a finished call alive.
  std::weak_ptr<GenerateCall> weak = call;
  Dispatcher* dispatcher = deps.dispatcher;
  stream->SetNotify([weak, dispatcher] {
    if (auto c = weak.lock()) dispatcher->Wake(std::move(c));
  });
  // Outputs pushed before the callback was installed did not wake anyone. Writes started before
  // gRPC binds the reactor are held in its backlog, so waking now is safe.
  dispatcher->Wake(call);
  return reactor;
}

void GenerateCall::OnWriteDone(bool ok) {
  if (!ok) client_gone_ = true;
  write_in_flight_ = false;
  deps_.dispatcher->Wake(shared_from_this());
}

void GenerateCall::OnCancel() {
  client_gone_ = true;
  deps_.dispatcher->Wake(shared_from_this());
}

void GenerateCall::FinishCall(const grpc::Status& status, CallOutcome outcome) {
  finished_ = true;
  on_finished_();
  deps_.metrics->CountRequest(outcome);
  reactor_->Finish(status);
}

void GenerateCall::Pump() {
  if (finished_ || write_in_flight_) return;
  if (client_gone_) {
    // Frees the request's blocks; its final output has nowhere to go.
    deps_.engine->Cancel(engine_id_);
    spdlog::debug("client gone, request cancelled request_id={} tokens={}", request_id_,
                  tokens_sent_);
    FinishCall(grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call"),
               CallOutcome::kCancelled);
    return;
  }

  response_.Clear();
  std::optional<RequestOutput> last;
  int n = 0;
  while (std::optional<RequestOutput> out = stream_->TryPop()) {
    for (const GeneratedToken& t : out->tokens) {
      v1::GeneratedToken* pt = response_.add_tokens();
      pt->set_token(t.token);
      pt->set_logprob(t.logprob);
      for (const TokenLogprob& alt : t.top_logprobs) {
        v1::TokenLogprob* pa = pt->add_top_logprobs();
        pa->set_token(alt.token);
        pa->set_logprob(alt.logprob);
      }
    }
    n += static_cast<int>(out->tokens.size());
    const bool finished = out->finished;
    last = std::move(out);
    if (finished) break;
  }
  if (!last.has_value()) return;

  const auto now = std::chrono::steady_clock::now();
  if (n > 0) {
    if (!first_token_sent_) {
      first_token_sent_ = true;
      response_.set_prompt_tokens(last->prompt_tokens);
      response_.set_cached_prompt_tokens(last->cached_prompt_tokens);
      response_.set_queue_seconds(last->queue_seconds);
      response_.set_kv_recomputed(last->kv_recomputed);
      deps_.metrics->ObserveTimeToFirstToken(std::chrono::duration<double>(now - arrival_).count());
    }
    deps_.metrics->AddGeneratedTokens(n);
    tokens_sent_ += n;
  }
  if (!last->finished) {
    if (n == 0) return;
    write_in_flight_ = true;
    reactor_->StartWrite(&response_);
    return;
  }

  const double seconds = std::chrono::duration<double>(now - arrival_).count();
  if (last->finish_reason == FinishReason::kError) {
    spdlog::error("request failed request_id={} error={}", request_id_,
                  Quoted(last->error.ToString()));
    const Status error = last->error.ok() ? InternalError("the engine failed") : last->error;
    FinishCall(ToGrpcStatus(error), CallOutcome::kError);
    return;
  }
  spdlog::debug("request finished request_id={} reason={} tokens={} seconds={:.3f}", request_id_,
                FinishReasonName(last->finish_reason), tokens_sent_, seconds);
  deps_.metrics->ObserveRequestDuration(seconds);
  response_.set_finished(true);
  response_.set_finish_reason(ToProto(last->finish_reason));
  response_.set_prompt_tokens(last->prompt_tokens);
  response_.set_cached_prompt_tokens(last->cached_prompt_tokens);
  response_.set_queue_seconds(last->queue_seconds);
  response_.set_kv_recomputed(last->kv_recomputed);
  if (last->kv_handle) {
    v1::KvHandle* handle = response_.mutable_kv_handle();
    ToProto(*last->kv_handle, deps_.engine->kv_layout(), handle);
    if (deps_.kv_descriptor != nullptr) {
      handle->set_transfer_backend(deps_.kv_descriptor->backend);
      handle->set_transfer_descriptor(deps_.kv_descriptor->bytes);
    }
  }
  finished_ = true;
  on_finished_();
  deps_.metrics->CountRequest(OutcomeOf(last->finish_reason));
  reactor_->StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
}

}  // namespace tandem::worker
