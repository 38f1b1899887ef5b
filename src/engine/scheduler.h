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
// Thread safety: not thread-safe; owned by the engine thread.
#pragma once

#include <chrono>
#include <deque>
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

  // Takes every sequence out, releasing their blocks (shutdown).
  std::vector<std::unique_ptr<Sequence>> RemoveAll();

  // The waiting head when nothing runs and it still cannot be scheduled (it can never fit).
  Sequence* Stuck() const;

  bool empty() const { return running_.empty() && waiting_.empty() && loads_.empty(); }
  int num_running() const { return static_cast<int>(running_.size()); }
  // Waiting to be admitted, including those whose prefix is being loaded.
  int num_waiting() const { return static_cast<int>(waiting_.size() + loads_.size()); }
  // Blocks until a prefix load is ready or `timeout` passes (a step with nothing else to run).
  void WaitForLoads(std::chrono::milliseconds timeout);
  int BlocksFor(int64_t tokens) const;
  // Pool blocks loaded from the host or disk tier so far.
  int64_t onboarded_blocks() const { return onboarded_blocks_; }

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

  SchedulerOptions options_;
  kvcache::BlockPool* pool_;
  kvcache::KvTiers* tiers_;
  std::vector<std::unique_ptr<Sequence>> running_;  // In admission order.
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<Load> loads_;
  int64_t onboarded_blocks_ = 0;
};

}  // namespace tandem::engine
