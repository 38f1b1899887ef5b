// Generation: one request's text side, shared by the HTTP and gRPC front ends. Start checks the
// prompt against the cluster (vocabulary, context) before anything is routed, hashes it into KV
// blocks with the cluster's seed, and hands it to a RequestRunner (request_runner.h), which
// routes it and runs it on a worker. The token batches that come back become text deltas
// (TextStream: incremental detokenization, stop strings) for a GenerationSink. A stop string
// stops the runner (the call is cancelled on the worker); so does Cancel (the client went away).
//
// Thread safety: everything after Start runs on the Executor given to Start, which must run
// tasks one at a time in order (an Asio strand); Cancel must be called there too.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frontend/metrics.h"
#include "frontend/request_runner.h"
#include "frontend/served_model.h"
#include "frontend/text_stream.h"
#include "frontend/worker_pool.h"
#include "tandem/status.h"
#include "tandem/v1/worker.pb.h"

namespace tandem::frontend {

struct GenerationInput {
  std::string request_id;
  std::vector<int32_t> prompt_ids;
  // max_tokens unset: up to the end of the context.
  v1::SamplingParams sampling;
  std::vector<std::string> stop;
  bool skip_special_tokens = true;
  std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();
};

// Text and tokens that arrived together.
struct GenerationDelta {
  std::string text;
  std::vector<v1::GeneratedToken> tokens;
  // For each token: bytes of text emitted before the text this token adds.
  std::vector<size_t> text_offsets;
};

struct GenerationResult {
  // Not OK: the request failed on the worker (INVALID_ARGUMENT, UNAVAILABLE, ...).
  Status status;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  // Prompt tokens the worker found in its prefix cache instead of computing them.
  int cached_prompt_tokens = 0;
};

// "stop", "length", or "abort" for the others (OpenAI's finish_reason strings).
const char* FinishReasonName(v1::FinishReason reason);

class GenerationSink {
 public:
  virtual ~GenerationSink() = default;
  // Runs on the executor; `delta` has text or tokens.
  virtual void OnDelta(GenerationDelta&& delta) = 0;
  // Runs on the executor, exactly once, last (never after Cancel).
  virtual void OnFinish(const GenerationResult& result) = 0;
};

// What every request shares; all outlive every Generation.
struct GenerationContext {
  WorkerPool* pool = nullptr;
  const ServedModel* model = nullptr;
  FrontendMetrics* metrics = nullptr;
  DisaggregationOptions disaggregation;
};

class Generation : public std::enable_shared_from_this<Generation> {
 public:
  using Executor = std::function<void(std::function<void()>)>;

  // Errors, before anything started (the sink is then never called): UNAVAILABLE when no worker
  // is up; INVALID_ARGUMENT when the prompt is empty, has ids outside the vocabulary, or does
  // not fit the context with max_tokens.
  static StatusOr<std::shared_ptr<Generation>> Start(const GenerationContext& context,
                                                     GenerationInput input, Executor executor,
                                                     std::shared_ptr<GenerationSink> sink);

  // The client is gone: cancels the call on the worker; the sink hears nothing more.
  void Cancel();

  const std::string& request_id() const { return input_.request_id; }
  int prompt_tokens() const { return static_cast<int>(input_.prompt_ids.size()); }

 private:
  Generation(const GenerationContext& context, GenerationInput input,
             std::shared_ptr<GenerationSink> sink);
  // Checks the prompt against the cluster's worker info (and fills in max_tokens).
  Status CheckPrompt(const v1::WorkerInfo& info);
  void OnResponse(const v1::GenerateResponse& response);
  void OnDone(const Status& status);
  void Finish(GenerationResult result);

  const GenerationContext context_;
  GenerationInput input_;
  std::shared_ptr<GenerationSink> sink_;  // Dropped once finished (it holds us too).
  TextStream text_;
  std::shared_ptr<RequestRunner> runner_;
  bool finished_ = false;
  int completion_tokens_ = 0;
  int cached_prompt_tokens_ = 0;
};

}  // namespace tandem::frontend
