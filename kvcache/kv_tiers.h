// G2 and G3 behind the engine's G1 pool (ARCHITECTURE §3 "Tiers"): completed G1 blocks are copied
// out to the host tier, the host tier's evictions spill to the disk tier (when it admits them;
// written by a thread of their own), and a prefix found on either is loaded back into G1 blocks
// instead of being recomputed.
//
// The engine backend moves the bytes between its pool and host memory (BlockMover); KvTiers
// decides where they go. Every change is a KV event on the sink the stores were given.
//
// Thread safety: called from the engine thread, which must be the only one putting into the
// stores (onboarding copies from the host tier's memory in place).
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <unordered_map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvcache/block_store.h"
#include "kvcache/clock.h"
#include "kvcache/disk_store.h"
#include "kvcache/host_store.h"
#include "tandem/ids.h"
#include "tandem/kv_tier_stats.h"

namespace tandem::kvcache {

// Copies whole blocks between the engine's pool (G1) and host memory, a batch at a time.
class BlockMover {
 public:
  virtual ~BlockMover() = default;
  virtual size_t block_bytes() const = 0;
  // blocks[i] → dst[i] / src[i] → blocks[i], block_bytes() each; complete on return.
  virtual Status CopyOut(std::span<const BlockId> blocks, std::span<std::byte* const> dst) = 0;
  virtual Status CopyIn(std::span<const BlockId> blocks,
                        std::span<const std::byte* const> src) = 0;
  // CopyOut in the background, behind the engine's steps so far and overlapping later ones:
  // a ticket, reported by FinishedCopies (in order; `wait`: once every copy begun is done).
  virtual StatusOr<uint64_t> BeginCopyOut(std::span<const BlockId> blocks,
                                          std::span<std::byte* const> dst) = 0;
  virtual StatusOr<std::vector<uint64_t>> FinishedCopies(bool wait) = 0;
};

// A completed G1 block to keep on the tiers.
struct OffloadBlock {
  BlockHash hash = 0;
  std::optional<BlockHash> parent;
  BlockId block;
};

struct KvTiersOptions {
  int spill_queue_blocks = 64;  // blocks waiting for the G3 writer; past that the engine waits
  int host_blocks = 0;  // G2 capacity in blocks; 0: no host tier
  std::string disk_path;  // G3 file; with disk_blocks > 0
  int disk_blocks = 0;    // G3 capacity in blocks; 0: no disk tier
  int disk_admit_after_reuses = 1;
  int disk_queue_depth = 64;
};

using tandem::KvTiersStats;  // include/tandem/kv_tier_stats.h

class KvTiers {
 public:
  // Null when both tiers are off. `allocator` (null: aligned memory) backs the host tier; the
  // clock, the sink and the mover must outlive the tiers.
  static StatusOr<std::unique_ptr<KvTiers>> Create(const KvTiersOptions& options,
                                                   BlockMover* mover,
                                                   HostAllocator* allocator = nullptr,
                                                   const Clock* clock = nullptr,
                                                   KvEventSink* events = nullptr);

  // How many leading hashes of the chain are held on G2 or G3 (each block on either, or on its
  // way to G3).
  int CountPrefix(std::span<const BlockHash> hashes) const;

  // Onboarding, in two halves so that the disk reads overlap the engine's steps. BeginLoad
  // takes the longest prefix of `hashes` the tiers hold (CountPrefix) and has a loader thread
  // read its G3 blocks; `blocks` of the result is how many the load covers (0: nothing held, no
  // load). FinishLoad, once LoadReady, copies the load into the G1 blocks `into` (G2 blocks
  // straight from its memory, in one batch with the G3 ones) up to the first block no longer
  // found, and returns how many were loaded; CancelLoad drops a load instead.
  struct LoadStart {
    uint64_t ticket = 0;
    int blocks = 0;
  };
  LoadStart BeginLoad(std::span<const BlockHash> hashes);
  bool LoadReady(uint64_t ticket) const;
  int FinishLoad(uint64_t ticket, std::span<const BlockId> into);
  void CancelLoad(uint64_t ticket);
  // Waits until some load is ready or `timeout` passes.
  void WaitForLoads(std::chrono::milliseconds timeout) const;

  // Completed G1 blocks: copied to G2 straight into its memory, in one batch in the background
  // (BlockMover::BeginCopyOut), unless G2 holds them already (then only refreshed); without G2,
  // copied out at once and written to G3 (when it admits them) by the writer thread.
  // `in_flight`: the G1 blocks whose copies started, which the caller keeps unwritten (holds a
  // reference to) until Poll or Drain returns them; `finished`: blocks of earlier copies waited
  // for because G2 had no free slot (the caller applies in_flight before finished). A block
  // reaches G2 (is found, and is an event) when its copy is committed.
  struct Offloaded {
    std::vector<BlockId> in_flight;
    std::vector<BlockId> finished;
  };
  StatusOr<Offloaded> Offload(std::span<const OffloadBlock> blocks);
  // Commits the background copies that have finished; returns their G1 blocks.
  StatusOr<std::vector<BlockId>> Poll();
  // The same once every copy in flight has finished.
  StatusOr<std::vector<BlockId>> Drain();

  // Waits for the copies in flight (they write into the host tier's memory).
  ~KvTiers();

  // Prefix hits on `hashes` (on any tier): counts toward the disk tier's admission.
  void NoteReuse(std::span<const BlockHash> hashes);

  KvTiersStats stats() const;
  HostStore* host() { return host_.get(); }
  DiskStore* disk() { return disk_.get(); }

 private:
  class Spiller;
  class Loader;
  explicit KvTiers(BlockMover* mover);

  BlockMover* const mover_;
  std::unique_ptr<HostStore> host_;
  std::unique_ptr<DiskStore> disk_;
  std::unique_ptr<Spiller> spiller_;  // G2 → G3 writes, off the engine thread
  std::unique_ptr<Loader> loader_;    // G3 reads for onboarding, off the engine thread
  std::vector<std::byte> staging_;  // blocks between the disk tier and the mover
  struct InFlight {
    uint64_t ticket;
    std::vector<OffloadBlock> blocks;
  };
  std::deque<InFlight> in_flight_;  // background copies into G2, oldest first
  uint64_t next_load_ = 1;
  std::unordered_map<uint64_t, std::vector<BlockHash>> load_hashes_;  // per load, its prefix
  StatusOr<std::vector<BlockId>> Commit(bool wait);
  KvTiersStats counts_;
};

}  // namespace tandem::kvcache
