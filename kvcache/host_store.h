// G2: a pool of host memory holding whole KV blocks by hash, LRU when full. The memory comes from
// a HostAllocator: page-aligned memory by default; the CUDA backend hands in one that pins it
// (cudaHostAlloc), so copies between it and the device pool run at full PCIe speed.
//
// Thread safety: thread-safe (BlockStore).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kvcache/block_store.h"
#include "kvcache/clock.h"
#include "kvcache/slot_index.h"

namespace tandem::kvcache {

class HostAllocator {
 public:
  virtual ~HostAllocator() = default;
  virtual StatusOr<void*> Allocate(size_t bytes) = 0;
  virtual void Free(void* p, size_t bytes) = 0;
};

// Page-aligned (4 KiB) memory from the C++ runtime, not pinned.
HostAllocator& AlignedHostAllocator();

struct HostStoreOptions {
  size_t block_bytes = 0;
  int capacity_blocks = 0;
};

class HostStore final : public SlotStore {
 public:
  // The allocator, clock and sink (null: no events) must outlive the store.
  static StatusOr<std::unique_ptr<HostStore>> Create(HostStoreOptions options,
                                                     HostAllocator* allocator = nullptr,
                                                     const Clock* clock = nullptr,
                                                     KvEventSink* events = nullptr);
  ~HostStore() override;

  KvTier tier() const override { return KvTier::kHost; }
  size_t block_bytes() const override { return options_.block_bytes; }
  int capacity() const override { return options_.capacity_blocks; }
  // Put: ResourceExhausted when every slot is taken by in-place puts not yet committed.
  StatusOr<PutResult> Put(BlockHash hash, std::optional<BlockHash> parent,
                          std::span<const std::byte> data) override;
  Status Get(BlockHash hash, std::span<std::byte> out) override;

  // Put without a copy: reserves a slot for `hash` (evicting as Put does) and returns where its
  // bytes go, or null when the block is held already (its recency refreshed), `hash` is being
  // put, or every slot is reserved by puts not yet committed (then *full is set). The block is
  // invisible until CommitPut; AbortPut gives the slot back. For copies from the device straight
  // into the tier's (pinned) memory.
  std::byte* BeginPut(BlockHash hash, bool* full = nullptr);
  void CommitPut(BlockHash hash, std::optional<BlockHash> parent);
  void AbortPut(BlockHash hash);

  // Called with a block about to be evicted (its bytes still intact), under the store's lock:
  // where the disk tier takes G2's evictions. Set before use.
  using EvictHook = std::function<void(BlockHash hash, std::optional<BlockHash> parent,
                                       std::span<const std::byte> data)>;
  void set_evict_hook(EvictHook hook) { evict_hook_ = std::move(hook); }

  // Where a held block's bytes are, for a copy straight to the device: counted as a hit (and
  // the block marked used), null and a miss when absent. Valid until the block is evicted or
  // removed: the caller must be the only one putting into the store meanwhile.
  const std::byte* Find(BlockHash hash);

 private:
  HostStore(HostStoreOptions options, HostAllocator* allocator, std::byte* memory,
            const Clock& clock, KvEventSink* events);
  std::byte* slot_data(int slot) const {
    return memory_ + static_cast<size_t>(slot) * options_.block_bytes;
  }

  const HostStoreOptions options_;
  HostAllocator* const allocator_;
  std::byte* const memory_;
  std::vector<std::optional<BlockHash>> parents_;  // per slot
  std::unordered_map<BlockHash, int> pending_;     // BeginPut's slots, not yet committed
  EvictHook evict_hook_;
};

}  // namespace tandem::kvcache
