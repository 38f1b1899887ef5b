// The engine contract seen by its callers (the CLI, the worker daemons): submit a request, read
// its outputs from a per-request stream, cancel it; and what a worker reports about it: stats,
// KV events, the model's identity and the KV layout. The worker service is built against this
// interface only, so it can be tested against a fake engine.
//
// Thread safety: Engine is thread-safe; any thread may call any method or read a stream. The
// work itself runs on the engine's own thread.
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
#include "tandem/kv_events.h"
#include "tandem/kv_layout.h"
#include "tandem/kv_pull.h"
#include "tandem/kv_tier_stats.h"
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
  // Disaggregated prefill (ARCHITECTURE §1, step 3): compute the prompt, sample the first token
  // (max_tokens is taken as 1) and keep the prompt's KV blocks pinned under a KV lease, described
  // by the last output's kv_handle, for a decode worker to pull. Release it with ReleaseKv; one
  // never released expires (EngineOptions::kv_lease_ttl) and frees its blocks.
  bool prefill_only = false;
  // Disaggregated decode (ARCHITECTURE §1, step 4): the prompt's KV computed by a prefill worker.
  // The prompt is then the prefilled prompt followed by its first token. The engine reuses its
  // own cached prefix, pulls the rest of the handle's tokens through its KvPuller, and computes
  // the remainder; when the source does not hold (no puller, a handle that does not fit the
  // request or the layout, a failed transfer, a lease the peer no longer holds) it computes the
  // whole prompt itself.
  std::optional<KvSource> kv_source;
};

// The memory of an engine's KV pool (G1), for a transfer backend to register once so that peers
// read blocks from it (or write into it): block b lives at base + b × KvLayout::BlockBytes(),
// block-major (ARCHITECTURE §3 "KV block").
struct KvMemory {
  void* base = nullptr;
  size_t bytes = 0;
  bool device = false;  // CUDA device memory (else host memory)
  int device_index = -1;
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
  // A prefill_only request's KV, on its final output (when it did not stop at its first token).
  std::optional<KvHandle> kv_handle;
  // A request with a kv_source that could not be used: its prompt was computed here.
  bool kv_recomputed = false;
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

// A simulated backend's account of time (the mock): what its steps should have taken and what
// they took, in real seconds. Slip is actual − expected: the machine could not keep up.
struct SimulationStats {
  double expected_seconds = 0;  // Σ predicted step times, divided by the speedup.
  double actual_seconds = 0;    // Σ real time the steps took.
  int64_t steps = 0;
};

// A snapshot of an engine's counters.
struct EngineStats {
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int blocks_total = 0;
  int blocks_available = 0;
  int running = 0;
  int waiting = 0;
  // Prompt tokens of requests whose prefill has not finished yet (waiting or mid-prefill),
  // the router's measure of queued prefill work (ARCHITECTURE §3 "Load report").
  int64_t queued_prefill_tokens = 0;
  // Pool blocks loaded from the host or disk tier instead of being recomputed.
  int64_t onboarded_blocks = 0;
  // KV leases held for decode workers' pulls now, and those that expired unreleased.
  int kv_leases = 0;
  int64_t kv_leases_expired = 0;
  // Disaggregated decode: pulls of a prefill worker's KV that succeeded and their bytes and time,
  // and requests whose source failed and which were prefilled here instead.
  int64_t kv_pulls = 0;
  int64_t kv_pulled_bytes = 0;
  double kv_pull_seconds = 0;
  int64_t kv_pull_recomputes = 0;
  // The host and disk tiers' counters as of the last step (all zero without tiers).
  KvTiersStats tiers;
  // The mock backend's account of simulated against real time; nullopt on real backends.
  std::optional<SimulationStats> simulation;
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

  // Unpins a KV lease (GenerateRequest::prefill_only). With `blocks` (what a decode worker
  // pulled), first checks that they are the lease's: InvalidArgument, the lease kept, when they
  // are not. `done` runs on the engine thread once it is applied, with NotFound for a lease that
  // is unknown, released or expired; it must be quick and must not block.
  virtual void ReleaseKv(uint64_t lease_id, std::vector<int32_t> blocks,
                         std::function<void(const Status&)> done) = 0;
  // Where requests with a kv_source pull from (the worker daemon's transfer backend); without
  // one they are prefilled here. Set before serving such requests.
  virtual void SetKvPuller(std::shared_ptr<KvPuller> puller) = 0;

  virtual int vocab_size() const = 0;
  virtual int max_model_len() const = 0;

  virtual EngineStats stats() const = 0;
  // Every change of what the pool and the tiers hold (ARCHITECTURE §3 "KV events"); lives as
  // long as the engine.
  virtual KvEventSource& kv_events() = 0;
  // What the block hash seed is computed from: the model's configuration and weights, never a
  // path (ARCHITECTURE §3 "Block hash"); BlockHashSeed(model_identity()) is the seed of requests
  // without a cache salt.
  virtual const std::string& model_identity() const = 0;
  // The KV block layout of the engine's pool; its block_size is the block hash's block size.
  virtual const KvLayout& kv_layout() const = 0;
  // The KV pool's memory; nullopt for a backend without any (mock: simulated).
  virtual std::optional<KvMemory> kv_memory() const = 0;
};

}  // namespace tandem
