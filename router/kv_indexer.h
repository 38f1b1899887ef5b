// KvIndexer: which workers hold which KV blocks, on which tier, as their KV events tell
// (ARCHITECTURE §3 "KV events"), and for a request's chained block hashes, how long a prefix each
// worker holds. One table from block hash to its holders (worker, tiers); a chained hash names
// its whole prefix, so matching walks the request's hashes from the first and keeps the workers
// that hold every block so far.
//
// The table is its own open-addressing hash table (linear probing, 32-byte slots, two to a cache
// line, up to four holders inline and the rest in an overflow list), because the walk is on
// every request's path and the table of a large cluster does not fit in cache: the walk
// prefetches the exact slot of each block several blocks ahead, which a general-purpose map
// cannot offer. Slots are placed by the block hash times a random odd number, so prompts crafted
// to collide cannot pile up one probe run. A block hash of 0 marks an empty slot and is never
// indexed (one block in 2^64 is then not seen as cached; routing stays correct).
//
// Thread safety: none; the Router calls it under its lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "tandem/block_hash.h"
#include "tandem/kv_events.h"

namespace tandem::router {

// The indexer's name for a worker: dense, never reused within one indexer.
using WorkerSlot = uint32_t;

// How many leading blocks of a request one worker holds, by the best tier each was found on.
struct PrefixMatch {
  WorkerSlot worker = 0;
  int device_blocks = 0;
  int host_blocks = 0;
  int disk_blocks = 0;

  int blocks() const { return device_blocks + host_blocks + disk_blocks; }
};

class KvIndexer {
 public:
  // `hashes` are now on `tier` of `worker` (adding to what it holds).
  void Stored(WorkerSlot worker, KvTier tier, std::span<const BlockHash> hashes);
  // `hashes` left `tier` of `worker`; hashes it did not hold there are ignored.
  void Removed(WorkerSlot worker, KvTier tier, std::span<const BlockHash> hashes);
  // Forgets everything `worker` holds (it left, was cleared, or is being rebuilt from a
  // snapshot). Scans the table: rare, and cheaper than keeping a second index per worker on the
  // path of every event.
  void RemoveWorker(WorkerSlot worker);

  // Appends to `out` one PrefixMatch per worker that holds at least the first block of `hashes`,
  // counting its consecutive blocks from the start (a block on any tier extends the prefix).
  void FindMatches(std::span<const BlockHash> hashes, std::vector<PrefixMatch>* out) const;

  KvIndexer();

  // Distinct block hashes held by any worker.
  size_t num_blocks() const { return size_; }
  // (block, worker) pairs: the blocks every worker holds, summed.
  size_t num_entries() const { return entries_; }
  // Blocks `worker` holds (on any tier).
  size_t worker_blocks(WorkerSlot worker) const;

 private:
  struct Holder {
    WorkerSlot worker = 0;
    uint8_t tiers = 0;  // Bit (tier - 1) set when the block is on that tier; 0: no holder.
  };
  static constexpr int kInline = 4;
  struct Slot {
    BlockHash key = 0;  // 0: empty.
    WorkerSlot workers[kInline] = {};
    uint8_t tiers[kInline] = {};  // 0: that inline holder is free.
    uint32_t overflow = 0;        // 1 + index into overflow_ of the other holders; 0: none.
  };
  static_assert(sizeof(Slot) == 32);

  size_t Home(BlockHash key) const { return (key * multiplier_) >> shift_; }
  // The slot holding `key`, or SIZE_MAX.
  size_t Find(BlockHash key) const;
  // The slot holding `key`, made when absent.
  size_t FindOrInsert(BlockHash key);
  // Empties slot i, shifting later slots of its probe run back (no tombstones).
  void EraseSlot(size_t i);
  void Grow();
  // Adds `bit` to worker's holder in slot i (a new holder when it had none); true when new.
  bool AddHolder(size_t i, WorkerSlot worker, uint8_t bit);
  // Clears `bits` from worker's holder in slot i; true when the holder is gone (and the slot
  // is erased when it has no holder left).
  bool RemoveHolder(size_t i, WorkerSlot worker, uint8_t bits);
  bool SlotEmptyOfHolders(const Slot& s) const;
  void CountBlocks(WorkerSlot worker, int delta);

  // Zeroed slots; large tables are backed by huge pages where the kernel allows, since the walk
  // touches a random page per block and would otherwise miss the TLB as well as the cache.
  struct SlotArray {
    Slot* data = nullptr;
    size_t count = 0;
    explicit SlotArray(size_t n);
    ~SlotArray();
    SlotArray(SlotArray&& other) noexcept;
    SlotArray& operator=(SlotArray&& other) noexcept;
    size_t size() const { return count; }
    Slot& operator[](size_t i) { return data[i]; }
    const Slot& operator[](size_t i) const { return data[i]; }
  };

  SlotArray slots_;
  uint64_t multiplier_;
  int shift_;  // 64 - log2(slots_.size()).
  size_t size_ = 0;
  std::vector<std::vector<Holder>> overflow_;
  std::vector<uint32_t> free_overflow_;
  size_t entries_ = 0;
  std::vector<size_t> worker_blocks_;  // Index: WorkerSlot.
  // FindMatches' scratch, by worker: blocks matched so far (0: none) and where its match is.
  struct Progress {
    uint32_t depth = 0;
    uint32_t index = 0;
  };
  mutable std::vector<Progress> scratch_;
};

}  // namespace tandem::router
