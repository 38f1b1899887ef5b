// The bookkeeping G2 and G3 share: SlotIndex — `capacity` slots, the hash each holds, a free list
// and an eviction policy over the occupied ones (slot ids stand in for block ids) — and
// SlotStore, the BlockStore half that needs nothing but the index (lookups, removal, stats,
// events). Memory or file offsets are the stores' business.
//
// Thread safety: SlotIndex none; SlotStore guards it with mu_, which the stores' own methods take
// too.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "kvcache/block_store.h"
#include "kvcache/clock.h"
#include "kvcache/eviction_policy.h"
#include "tandem/block_hash.h"

namespace tandem::kvcache {

class SlotIndex {
 public:
  // LRU on `clock` (which must outlive the index).
  SlotIndex(int capacity, const Clock& clock);

  int capacity() const { return static_cast<int>(hash_of_.size()); }
  int size() const { return static_cast<int>(index_.size()); }

  std::optional<int> Find(BlockHash hash) const;
  // Marks an occupied slot used now.
  void Touch(int slot);
  // A slot for a new block: a free one, else the least recently used one, whose hash leaves the
  // index and is returned in *evicted; nullopt when every slot is acquired and unpublished. The
  // slot is unpublished until Publish.
  std::optional<int> Acquire(std::optional<BlockHash>* evicted);
  // `slot` (from Acquire) now holds `hash`.
  void Publish(int slot, BlockHash hash);
  // Gives an acquired slot back unused (its write failed).
  void Abandon(int slot);
  // Drops `hash`; the slot it held, if any.
  std::optional<int> Drop(BlockHash hash);
  // Drops everything; the hashes that were held.
  std::vector<BlockHash> DropAll();

 private:
  std::unique_ptr<EvictionPolicy> policy_;
  std::vector<std::optional<BlockHash>> hash_of_;  // per slot
  std::vector<int> free_;
  std::unordered_map<BlockHash, int> index_;
};

class SlotStore : public BlockStore {
 public:
  int size() const override;
  bool Contains(BlockHash hash) const override;
  void Remove(BlockHash hash) override;
  void Clear() override;
  BlockStoreStats stats() const override;

 protected:
  // The sink (null: no events) must outlive the store.
  SlotStore(int capacity, const Clock& clock, KvEventSink* events);

  // With mu_ held: report to the sink.
  void ReportStored(BlockHash hash, std::optional<BlockHash> parent);
  void ReportRemoved(std::span<const BlockHash> hashes);

  mutable std::mutex mu_;
  SlotIndex index_;
  BlockStoreStats stats_;

 private:
  KvEventSink* const events_;
};

}  // namespace tandem::kvcache
