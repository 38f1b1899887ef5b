// Continuous batching: which sequences run in the next step and how many tokens each.
//
// Each step first gives every running sequence its next tokens (one to decode, or the next chunk
// of a prefill), then admits waiting sequences while the token budget, the sequence limit and the
// free blocks allow. A waiting sequence first reuses the longest prefix of its full blocks found
// in the pool's prefix index. When a running sequence needs a block and none is free, the most
// recently admitted sequence is preempted: its blocks are released and it waits at the head of
// the queue, to be recomputed (mostly from the prefix cache) when blocks come back.
//
// With host and disk tiers (kvcache::KvTiers), a waiting sequence's prefix continues past what
// the pool holds into what the tiers hold: those blocks are loaded into fresh pool blocks
// (onboarded) rather than recomputed — the sequence steps aside while its disk reads run, and
// the others go on — and every block a step completes is offloaded to them.
//
// Disaggregated decode: a waiting sequence with a KV source (a prefill worker's handle) takes
// the prefix its own pool holds, allocates blocks for the rest of the source's tokens and has
// them pulled (KvPuller) while it steps aside; when the pull ends the engine hands the outcome
// to FinishPull, and the sequence is back at the head of the queue, either with those blocks
// (only what the source had beyond the pool's prefix is read) or, when the pull failed, with
// none, to be computed here.
//
// Thread safety: not thread-safe; owned by the engine thread.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "engine/sequence.h"
#include "kvcache/block_pool.h"
#include "kvcache/kv_tiers.h"

namespace tandem::engine {

struct SchedulerOptions {
  int block_size = 16;                // Tokens per KV block.
  int max_num_seqs = 64;              // Sequences running at once.
  int max_num_batched_tokens = 2048;  // Tokens per step (prefill chunks plus decodes).
};

struct ScheduledSequence {
  Sequence* seq = nullptr;
  int num_tokens = 0;  // Tokens of seq->tokens from seq->num_computed to run this step.
};

struct SchedulerOutput {
  std::vector<ScheduledSequence> scheduled;
  int num_preempted = 0;
};

class Scheduler {
 public:
  // `pool` and `tiers` (null: none) must outlive the scheduler.
  Scheduler(SchedulerOptions options, kvcache::BlockPool* pool,
            kvcache::KvTiers* tiers = nullptr);
  // Waits for the offload copies in flight.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Where sequences with a KV source pull from; null (the default): they are computed here.
  // `on_pull_done(serial, result)` runs on the puller's thread when a pull ends, and must hand
  // the result to FinishPull on the engine thread.
  void SetPuller(std::shared_ptr<KvPuller> puller,
                 std::function<void(uint64_t serial, const KvPullResult& result)> on_pull_done);

  void Add(std::unique_ptr<Sequence> seq);
  SchedulerOutput Schedule();
  // Records that the scheduled tokens ran: advances num_computed and publishes newly full blocks
  // in the prefix index.
  void OnStepDone(const SchedulerOutput& output);
  // Takes a sequence out (running or waiting), releasing its blocks. nullptr if unknown.
  std::unique_ptr<Sequence> Remove(RequestId id);

  // Releases the blocks whose background copies to the tiers have finished (all of them, after
  // waiting, with `wait`: when the engine goes idle). Schedule() does it without waiting.
  void CollectOffloads(bool wait);

  // A pull has ended (on_pull_done's arguments). False when it is no longer known here (its
  // sequence was cancelled meanwhile).
  bool FinishPull(uint64_t serial, const KvPullResult& result);

  // Takes every sequence out, releasing their blocks (shutdown).
  std::vector<std::unique_ptr<Sequence>> RemoveAll();

  // The waiting head when nothing runs and it still cannot be scheduled (it can never fit).
  Sequence* Stuck() const;

  bool empty() const {
    return running_.empty() && waiting_.empty() && loads_.empty() && pulls_.empty();
  }
  // Something a step could run or wait for: all but pulls (which end with FinishPull).
  bool has_work() const { return !running_.empty() || !waiting_.empty() || !loads_.empty(); }
  bool loading() const { return !loads_.empty(); }
  int num_running() const { return static_cast<int>(running_.size()); }
  // Waiting to be admitted, including those whose prefix is being loaded or pulled.
  int num_waiting() const {
    return static_cast<int>(waiting_.size() + loads_.size() + pulls_.size());
  }
  // Blocks until a prefix load is ready or `timeout` passes (a step with nothing else to run).
  void WaitForLoads(std::chrono::milliseconds timeout);
  int BlocksFor(int64_t tokens) const;
  // Pool blocks loaded from the host or disk tier so far.
  int64_t onboarded_blocks() const { return onboarded_blocks_; }
  // Disaggregated decode: pulls that succeeded, their bytes and seconds, and sequences whose
  // source failed (or could not be used) and that are computed here instead.
  struct PullStats {
    int64_t pulls = 0;
    int64_t bytes = 0;
    double seconds = 0;
    int64_t recomputes = 0;
  };
  const PullStats& pull_stats() const { return pull_stats_; }

 private:
  void Preempt(Sequence* seq);
  void ReleaseBlocks(Sequence* seq);
  // Hashes of seq's first `full_blocks` blocks, computed on demand.
  void ExtendHashes(Sequence* seq, int full_blocks) const;
  // Takes the longest prefix of seq's full blocks found in the pool; with tiers, starts loading
  // the blocks after it that they hold into new pool blocks (loads_.back(), whose seq the caller
  // fills) and returns true.
  bool MatchCachedPrefix(Sequence* seq);
  // A prefix being loaded from the tiers into `blocks` for `seq`, which waits meanwhile.
  struct Load {
    uint64_t ticket = 0;
    std::vector<BlockId> blocks;
    std::unique_ptr<Sequence> seq;
  };
  // Registers the loads that are ready (all, with `wait`) and puts their sequences back at the
  // head of the queue.
  void FinishLoads(bool wait);
  // Cancels a load and returns its sequence, every block released.
  std::unique_ptr<Sequence> DropLoad(std::vector<Load>::iterator it);

  // A sequence's source: pull what the pool lacks (true: it steps aside in pulls_), or nothing
  // to pull (false: admit it as usual; `seq->blocks` then holds its cached prefix, unless
  // `wait`: no room for the pull yet).
  bool StartPull(std::unique_ptr<Sequence>& seq, bool* wait);
  // The sequence gives up on its source and will be computed here.
  // (`release`: the lease is released at the peer; a failed pull's puller has done it).
  void GiveUpPull(Sequence* seq, const Status& why, bool release);
  // Its queue time and cached prompt tokens, when it is admitted (or starts its pull) first.
  void NoteFirstAdmission(Sequence* seq);
  struct Pull {
    uint64_t serial = 0;
    std::vector<BlockId> blocks;  // Pool blocks the pull writes into.
    int tokens = 0;               // Tokens of the sequence whose KV is in place once it is done.
    std::unique_ptr<KvPull> handle;
    std::unique_ptr<Sequence> seq;
  };
  // Cancels a pull and returns its sequence, every block released.
  std::unique_ptr<Sequence> DropPull(std::vector<Pull>::iterator it);

  SchedulerOptions options_;
  kvcache::BlockPool* pool_;
  kvcache::KvTiers* tiers_;
  std::vector<std::unique_ptr<Sequence>> running_;  // In admission order.
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<Load> loads_;
  int64_t onboarded_blocks_ = 0;
  std::shared_ptr<KvPuller> puller_;
  std::function<void(uint64_t, const KvPullResult&)> on_pull_done_;
  std::vector<Pull> pulls_;
  uint64_t next_pull_serial_ = 1;
  PullStats pull_stats_;
};

}  // namespace tandem::engine
