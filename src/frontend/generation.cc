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
  // Validated against the cluster before anything is routed: every worker agrees on the model.
  const std::optional<v1::WorkerInfo> info = context.pool->ClusterInfo();
  if (!info) return UnavailableError("no worker is available");
  std::shared_ptr<Generation> g(new Generation(context, std::move(input), std::move(sink)));
  TANDEM_RETURN_IF_ERROR(g->CheckPrompt(*info));
  RunnerInput run{.request_id = g->input_.request_id,
                  .prompt_ids = g->input_.prompt_ids,
                  .block_hashes = HashBlocks(g->input_.prompt_ids, std::max(info->block_size(), 1),
                                             info->block_hash_seed()),
                  .sampling = g->input_.sampling,
                  .block_size = std::max(info->block_size(), 1),
                  .arrival = g->input_.arrival};
  // The runner's callbacks hold the Generation until the call is done.
  TANDEM_ASSIGN_OR_RETURN(
      g->runner_,
      RequestRunner::Start(context.pool, context.metrics, context.disaggregation, std::move(run),
                           std::move(executor),
                           {.on_response = [g](const v1::GenerateResponse& r) { g->OnResponse(r); },
                            .on_done = [g](const Status& s) { g->OnDone(s); }}));
  return g;
}

Status Generation::CheckPrompt(const v1::WorkerInfo& info) {
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

Generation::Generation(const GenerationContext& context, GenerationInput input,
                       std::shared_ptr<GenerationSink> sink)
    : context_(context),
      input_(std::move(input)),
      sink_(std::move(sink)),
      text_(context.model->tokenizer(), input_.skip_special_tokens, input_.prompt_ids,
            input_.stop) {}

void Generation::Cancel() {
  if (finished_) return;
  finished_ = true;
  sink_.reset();
  if (runner_) runner_->Stop();
}

void Generation::OnResponse(const v1::GenerateResponse& response) {
  if (finished_) return;
  cached_prompt_tokens_ = std::max(cached_prompt_tokens_, response.cached_prompt_tokens());
  GenerationDelta delta;
  for (const v1::GeneratedToken& t : response.tokens()) {
    delta.text_offsets.push_back(text_.emitted_bytes());
    delta.tokens.push_back(t);
    ++completion_tokens_;
    delta.text += text_.Push(t.token());
    if (text_.stopped()) break;
  }
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  if (text_.stopped()) {
    reason = v1::FINISH_REASON_STOP;
    runner_->Stop();  // The worker stops and frees the request's blocks.
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
    result.status = UnavailableError("worker " + runner_->worker_address() +
                                     " stopped the request (it is shutting down)");
  } else if (reason == v1::FINISH_REASON_ERROR) {
    result.status = InternalError("worker " + runner_->worker_address() + " failed the request");
  }
  if (!result.status.ok()) {
    spdlog::warn("request failed on worker request_id={} worker={} error={}", input_.request_id,
                 runner_->worker_address(), Quoted(result.status.ToString()));
  }
  Finish(std::move(result));
}

void Generation::OnDone(const Status& status) {
  if (finished_) return;
  GenerationResult result;
  if (status.ok()) {
    // The stream ended without a final message: end the text as it stands.
    GenerationDelta delta;
    delta.text = text_.Finish();
    if (!delta.text.empty()) sink_->OnDelta(std::move(delta));
    result.finish_reason = v1::FINISH_REASON_STOP;
  } else {
    result.status = status;
    result.finish_reason = v1::FINISH_REASON_ERROR;
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
