// The engine contract seen by its callers (the CLI, the worker daemons): submit a request, read
// its outputs from a per-request stream, cancel it.
//
// Thread safety: Engine is thread-safe; any thread may Submit, Cancel or read a stream. The work
// itself runs on the engine's own thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tandem/ids.h"
#include "tandem/sampling_params.h"
#include "tandem/status.h"

namespace tandem {

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
enum class PromptLogits { kNone, kLast, kAll };
const char* FinishReasonName(FinishReason reason);

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

// One generated token.
struct GeneratedToken {
  int32_t token = 0;
  // Filled when the request asked for logprobs.
  float logprob = 0.0f;
  std::vector<TokenLogprob> top_logprobs;
};

struct GenerateRequest {
  std::vector<int32_t> prompt_tokens;
  SamplingParams sampling;
  // Return prompt logits (raw, before sampling): none, the last prompt position's (from which
  // the first token is sampled), or every prompt position's (prefix reuse is skipped then).
  PromptLogits prompt_logits = PromptLogits::kNone;
  // Mixed into the block hash seed: requests with different salts never share cached blocks.
  std::string cache_salt;
};

// What the engine sends back for a request: zero or more tokens, then one output with finished.
struct RequestOutput {
  std::vector<GeneratedToken> tokens;
  // Row-major [positions][vocab] when the request asked for logits.
  std::vector<float> logits;
  int logits_rows = 0;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  Status error;  // Set when finish_reason is kError.
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;  // Prompt tokens served from the prefix cache.
  // Seconds from Submit until the request was first scheduled (its time in the queue); set once
  // it has been scheduled.
  double queue_seconds = 0;
};

// A single-producer (engine thread), single-consumer queue of a request's outputs.
class OutputStream {
 public:
  void Push(RequestOutput output);
  // Blocks until an output is available or the deadline passes (nullopt).
  std::optional<RequestOutput> Pop(
      std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max());
  std::optional<RequestOutput> TryPop();

  // Installs a callback that the producer runs after each Push, outside the stream's lock and on
  // the engine thread, so it must be quick and must not block (a server wakes its delivery
  // thread with it). Install at most once. Outputs pushed before it is installed do not trigger
  // it: a consumer drains the stream once after installing.
  void SetNotify(std::function<void()> notify);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestOutput> queue_;
  std::function<void()> notify_;  // Set once under mu_; never changed afterwards.
};

class Engine {
 public:
  virtual ~Engine() = default;

  // Validates and enqueues the request; its outputs arrive on the returned stream. Bad input
  // (empty prompt, token id outside the vocabulary, prompt plus max_tokens beyond the context)
  // is an InvalidArgument here, before anything is enqueued.
  // The stream is shared by the engine thread (producer) and the caller (consumer).
  virtual StatusOr<std::pair<RequestId, std::shared_ptr<OutputStream>>> Submit(
      GenerateRequest request) = 0;

  // Stops the request at the next step boundary; its stream receives a final output with
  // FinishReason::kCancelled and its blocks are freed. Unknown or finished ids are ignored.
  virtual void Cancel(RequestId id) = 0;

  virtual int vocab_size() const = 0;
  virtual int max_model_len() const = 0;
};

}  // namespace tandem
