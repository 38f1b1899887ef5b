// The engine: one thread that owns the model runner, the block pool and the scheduler, and runs
// steps while there is work (llama.cpp's server loop). Callers talk to it through Submit/Cancel,
// which post typed commands to one queue that the engine thread applies in order, and read
// per-request OutputStreams.
//
// Thread safety: the public methods are thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "engine/model_runner.h"
#include "engine/scheduler.h"
#include "kvcache/block_pool.h"
#include "kvcache/clock.h"
#include "kvcache/kv_events.h"
#include "kvcache/kv_leases.h"
#include "kvcache/kv_tiers.h"
#include "tandem/engine.h"

namespace tandem::engine {

struct EngineOptions {
  int max_num_seqs = 64;              // Sequences running at once.
  int max_num_batched_tokens = 2048;  // Tokens per step; longer prompts are prefilled in chunks.
  bool enable_prefix_caching = true;  // Reuse full prompt blocks found by chained hash.
  int64_t max_model_len = 0;          // Longest prompt + output; 0 takes the model's.
  // The block hash seed's source (ARCHITECTURE §3): the model's configuration and weights,
  // never a path (engine_factory sets it). Empty: the configuration's identity alone.
  std::string model_identity;
  // Host (G2) and disk (G3) tiers behind the pool (ARCHITECTURE §3 "Tiers"), with prefix caching;
  // each off unless sized. Host memory is page-aligned (pinned when the backend provides it).
  int host_cache_blocks = 0;
  std::string disk_cache_path;             // The worker's file (created, preallocated).
  int disk_cache_blocks = 0;
  int disk_cache_admit_after_reuses = 1;  // Disk writes only blocks reused this often.
  size_t kv_event_capacity = 4096;        // KV events kept for subscribers that fall behind.
  // How long a KV lease (GenerateRequest::prefill_only) lives unreleased.
  std::chrono::milliseconds kv_lease_ttl{30000};
  // The clock of KV leases and eviction (tests inject a manual one); null: steady_clock.
  const kvcache::Clock* clock = nullptr;
};

class LlmEngine final : public Engine {
 public:
  static StatusOr<std::unique_ptr<LlmEngine>> Create(std::unique_ptr<ModelRunner> runner,
                                                     const EngineOptions& options);
  // Stops the engine thread; requests still in flight end with FinishReason::kCancelled.
  ~LlmEngine() override;
  LlmEngine(const LlmEngine&) = delete;
  LlmEngine& operator=(const LlmEngine&) = delete;

  StatusOr<std::pair<RequestId, std::shared_ptr<OutputStream>>> Submit(
      GenerateRequest request) override;
  void Cancel(RequestId id) override;
  void ReleaseKv(uint64_t lease_id, std::vector<int32_t> blocks,
                 std::function<void(const Status&)> done) override;
  void SetKvPuller(std::shared_ptr<KvPuller> puller) override;
  int vocab_size() const override;
  int max_model_len() const override { return static_cast<int>(max_model_len_); }
  EngineStats stats() const override;
  kvcache::KvEventLog& kv_events() override { return events_; }
  const kvcache::KvEventLog& kv_events() const { return events_; }
  // EngineOptions::model_identity, resolved.
  const std::string& model_identity() const override { return identity_; }
  const KvLayout& kv_layout() const override { return runner_->kv_layout(); }
  std::optional<KvMemory> kv_memory() const override { return runner_->kv_memory(); }

  const model::ModelConfig& config() const { return runner_->config(); }

 private:
  // Commands posted to the engine thread, applied in the order they were posted.
  struct SubmitCommand {
    std::unique_ptr<Sequence> seq;
  };
  struct CancelCommand {
    RequestId id;
  };
  struct ReleaseKvCommand {
    uint64_t lease_id;
    std::vector<int32_t> blocks;
    std::function<void(const Status&)> done;
  };
  struct SetPullerCommand {
    std::shared_ptr<KvPuller> puller;
  };
  struct PullDoneCommand {
    uint64_t serial;
    KvPullResult result;
  };
  using Command = std::variant<SubmitCommand, CancelCommand, ReleaseKvCommand, SetPullerCommand,
                               PullDoneCommand>;

  LlmEngine(std::unique_ptr<ModelRunner> runner, const EngineOptions& options,
            std::unique_ptr<kvcache::BlockMover> mover);
  Status CreateTiers();
  Status Validate(const GenerateRequest& request) const;
  void Post(Command command);
  void Apply(SubmitCommand& command);
  void Apply(CancelCommand& command);
  void Apply(ReleaseKvCommand& command);
  void Apply(SetPullerCommand& command);
  void Apply(PullDoneCommand& command);
  void Loop();
  // Publishes the engine-thread counters to the atomics stats() reads.
  void PublishStats();
  // A prefill_only request's prompt blocks, put under a KV lease.
  KvHandle GrantLease(const Sequence& seq);
  // Runs one step; false when nothing could run and nothing was waited for (only pulls are in
  // flight, or what waits does not fit until they end).
  bool Step();
  void Finish(Sequence* seq, FinishReason reason, Status error = OkStatus());
  // Handles one scheduled sequence's step result; returns true when it finished.
  bool Postprocess(const ScheduledSequence& s, SequenceResult& result);

  std::unique_ptr<ModelRunner> runner_;
  EngineOptions options_;
  int64_t max_model_len_;
  std::string identity_;
  std::vector<int32_t> eos_ids_;

  // Engine-thread state.
  kvcache::KvEventLog events_;
  std::unique_ptr<kvcache::BlockMover> mover_;
  std::unique_ptr<kvcache::KvTiers> tiers_;
  kvcache::BlockPool pool_;
  kvcache::KvLeases leases_;
  std::unique_ptr<Scheduler> scheduler_;

  // The command queue, shared with callers.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Command> commands_;  // Guarded by mu_.
  bool stop_ = false;
  uint64_t next_id_ = 1;

  std::atomic<int64_t> steps_{0}, preemptions_{0}, prompt_tokens_{0}, cached_prompt_tokens_{0},
      generated_tokens_{0}, queued_prefill_tokens_{0};
  std::atomic<int> blocks_available_{0}, running_{0}, waiting_{0};
  std::atomic<int64_t> onboarded_blocks_{0};
  std::atomic<int> kv_leases_{0};
  std::atomic<int64_t> kv_leases_expired_{0};
  std::atomic<int64_t> kv_pulls_{0}, kv_pulled_bytes_{0}, kv_pull_recomputes_{0};
  std::atomic<double> kv_pull_seconds_{0};
  mutable std::mutex tier_stats_mu_;
  kvcache::KvTiersStats tier_stats_;

  std::thread thread_;  // Started by Create once the tiers and the scheduler exist.
};

}  // namespace tandem::engine
