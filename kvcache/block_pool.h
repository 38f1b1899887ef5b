// G1: the engine's pool of KV blocks (ids only; the backend owns the memory), with reference
// counts and the prefix index that maps a chained block hash to the block holding it.
//
// A block is in one of three states: free (no data worth keeping), held (ref count > 0), or
// cached (ref count 0 but registered under a hash: reusable by a prefix hit until evicted).
// Allocation takes free blocks first, then evicts cached ones through the EvictionPolicy.
//
// Every change of what the index holds is reported to the optional KvEventSink as tier kDevice:
// Stored on Register, Removed on eviction and ClearCache, Cleared on Reset.
//
// Thread safety: not thread-safe; owned by the engine thread.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "kvcache/clock.h"
#include "kvcache/eviction_policy.h"
#include "kvcache/kv_events.h"
#include "tandem/block_hash.h"
#include "tandem/ids.h"
#include "tandem/status.h"

namespace tandem::kvcache {

struct BlockPoolOptions {
  int num_blocks = 0;                // Blocks in the pool; must be positive.
  bool enable_prefix_caching = true;  // Off: Register() is a no-op and nothing is ever matched.
};

class BlockPool {
 public:
  // `policy` defaults to LRU on `clock`, which defaults to SystemClock(). The clock and the
  // event sink (null: no events) must outlive the pool.
  explicit BlockPool(BlockPoolOptions options, std::unique_ptr<EvictionPolicy> policy = nullptr,
                     const Clock* clock = nullptr, KvEventSink* events = nullptr);
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  int num_blocks() const;
  // Blocks an Allocate() could hand out now: free plus cached (evictable).
  int num_available() const;
  int num_cached() const;  // Registered blocks with ref count 0.
  int num_free() const;    // Blocks holding nothing worth keeping.

  // n blocks with ref count 1, evicting cached blocks (and dropping their hashes) as needed.
  // ResourceExhausted, with no side effect, when fewer than n are available.
  StatusOr<std::vector<BlockId>> Allocate(int n);

  // The blocks holding the longest prefix of `hashes` found in the index, each with one more
  // reference (cached ones become held again).
  std::vector<BlockId> MatchPrefix(std::span<const BlockHash> hashes);
  // How many leading hashes MatchPrefix would match; changes nothing.
  int CountPrefix(std::span<const BlockHash> hashes) const;

  // Publishes a held, full block under `hash` (`parent`: the hash of the block before it in its
  // sequence, for the Stored event). When another block already holds `hash` the index keeps
  // that one and `block` stays unregistered. A block registers at most once.
  void Register(BlockId block, BlockHash hash, std::optional<BlockHash> parent = std::nullopt);

  // Drops one reference from each block, in reverse order of `blocks` (so a sequence's last
  // blocks are evicted before its first). A block reaching zero becomes cached when registered,
  // else free.
  void Release(std::span<const BlockId> blocks);

  // One more reference to each block, each already held (a copy out of it is in flight).
  void Retain(std::span<const BlockId> blocks);

  int ref_count(BlockId block) const;
  std::optional<BlockHash> hash_of(BlockId block) const;

  // Forgets every cached block (held blocks keep their data but lose their registration).
  void ClearCache();

  // Back to a fresh pool: every block free (references dropped: no sequence may still use one),
  // the index empty, a Cleared event.
  void Reset();

 private:
  struct BlockMeta {
    int ref_count = 0;
    std::optional<BlockHash> hash;
  };

  BlockPoolOptions options_;
  const Clock* clock_;
  KvEventSink* events_;
  std::unique_ptr<EvictionPolicy> policy_;
  std::vector<BlockMeta> meta_;
  std::vector<BlockId> free_;  // LIFO stack of free blocks.
  std::unordered_map<BlockHash, BlockId> index_;
};

}  // namespace tandem::kvcache
