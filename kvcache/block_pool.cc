#include "kvcache/block_pool.h"

#include <algorithm>
#include <string>
#include <utility>

#include "common/status_macros.h"

namespace tandem::kvcache {

BlockPool::BlockPool(BlockPoolOptions options, std::unique_ptr<EvictionPolicy> policy,
                     const Clock* clock, KvEventSink* events)
    : options_(options),
      clock_(clock != nullptr ? clock : &SystemClock()),
      events_(events),
      policy_(policy != nullptr ? std::move(policy) : MakeLruPolicy(*clock_)),
      meta_(static_cast<size_t>(options.num_blocks > 0 ? options.num_blocks : 0)) {
  TANDEM_CHECK(options_.num_blocks > 0);
  // Pushed in reverse so that a fresh pool hands out 0, 1, 2, ... (easier to read in logs).
  free_.reserve(meta_.size());
  for (int i = options_.num_blocks - 1; i >= 0; --i) free_.push_back(BlockId(i));
}

int BlockPool::num_blocks() const { return options_.num_blocks; }

int BlockPool::num_available() const { return num_free() + num_cached(); }

int BlockPool::num_cached() const { return policy_->size(); }

int BlockPool::num_free() const { return static_cast<int>(free_.size()); }

StatusOr<std::vector<BlockId>> BlockPool::Allocate(int n) {
  TANDEM_CHECK(n >= 0);
  const int available = num_available();
  if (n > available) {
    return ResourceExhaustedError("kv block pool exhausted: requested=" + std::to_string(n) +
                                  " available=" + std::to_string(available));
  }
  std::vector<BlockId> blocks;
  blocks.reserve(static_cast<size_t>(n));
  std::vector<BlockHash> evicted_hashes;
  for (int i = 0; i < n; ++i) {
    BlockId block;
    if (!free_.empty()) {
      block = free_.back();
      free_.pop_back();
    } else {
      std::optional<BlockId> victim = policy_->Victim();
      TANDEM_CHECK(victim.has_value());  // num_available() counted it.
      block = *victim;
      policy_->Remove(block);
      BlockMeta& evicted = meta_[block.value()];
      TANDEM_CHECK(evicted.ref_count == 0 && evicted.hash.has_value());
      index_.erase(*evicted.hash);
      evicted_hashes.push_back(*evicted.hash);
      evicted.hash.reset();
    }
    meta_[block.value()].ref_count = 1;
    blocks.push_back(block);
  }
  if (events_ != nullptr) events_->Removed(KvTier::kDevice, evicted_hashes);
  return blocks;
}

std::vector<BlockId> BlockPool::MatchPrefix(std::span<const BlockHash> hashes) {
  std::vector<BlockId> blocks;
  for (BlockHash hash : hashes) {
    auto it = index_.find(hash);
    if (it == index_.end()) break;
    const BlockId block = it->second;
    BlockMeta& meta = meta_[block.value()];
    if (meta.ref_count == 0) policy_->Remove(block);  // Cached: no longer evictable.
    ++meta.ref_count;
    blocks.push_back(block);
  }
  return blocks;
}

int BlockPool::CountPrefix(std::span<const BlockHash> hashes) const {
  int count = 0;
  for (BlockHash hash : hashes) {
    if (!index_.contains(hash)) break;
    ++count;
  }
  return count;
}

void BlockPool::Register(BlockId block, BlockHash hash, std::optional<BlockHash> parent) {
  TANDEM_CHECK(block.value() >= 0 && block.value() < options_.num_blocks);
  BlockMeta& meta = meta_[block.value()];
  TANDEM_CHECK(meta.ref_count > 0);  // Only a held block has data its owner vouches for.
  if (!options_.enable_prefix_caching) return;
  if (meta.hash.has_value()) {
    // Registering the same block again under the same hash (e.g. a block that came from a prefix
    // hit) is harmless; a second, different hash means the caller lost track of the block.
    TANDEM_CHECK(*meta.hash == hash);
    return;
  }
  // First writer wins: the indexed block may already be shared by other sequences, and the
  // duplicate is released as an ordinary free block.
  if (!index_.try_emplace(hash, block).second) return;
  meta.hash = hash;
  if (events_ != nullptr) events_->Stored(KvTier::kDevice, parent, {&hash, 1});
}

void BlockPool::Release(std::span<const BlockId> blocks) {
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    const BlockId block = *it;
    TANDEM_CHECK(block.value() >= 0 && block.value() < options_.num_blocks);
    BlockMeta& meta = meta_[block.value()];
    TANDEM_CHECK(meta.ref_count > 0);
    if (--meta.ref_count > 0) continue;
    if (meta.hash.has_value()) {
      policy_->Add(block);
    } else {
      free_.push_back(block);
    }
  }
}

void BlockPool::Retain(std::span<const BlockId> blocks) {
  for (BlockId block : blocks) {
    TANDEM_CHECK(block.value() >= 0 && block.value() < options_.num_blocks);
    BlockMeta& meta = meta_[block.value()];
    TANDEM_CHECK(meta.ref_count > 0);
    ++meta.ref_count;
  }
}

int BlockPool::ref_count(BlockId block) const {
  TANDEM_CHECK(block.value() >= 0 && block.value() < options_.num_blocks);
  return meta_[block.value()].ref_count;
}

std::optional<BlockHash> BlockPool::hash_of(BlockId block) const {
  TANDEM_CHECK(block.value() >= 0 && block.value() < options_.num_blocks);
  return meta_[block.value()].hash;
}

void BlockPool::ClearCache() {
  std::vector<BlockHash> removed;
  removed.reserve(index_.size());
  for (int i = 0; i < options_.num_blocks; ++i) {
    BlockMeta& meta = meta_[i];
    if (!meta.hash.has_value()) continue;
    removed.push_back(*meta.hash);
    meta.hash.reset();
    if (meta.ref_count == 0) {
      policy_->Remove(BlockId(i));
      free_.push_back(BlockId(i));
    }
  }
  index_.clear();
  if (events_ != nullptr) events_->Removed(KvTier::kDevice, removed);
}

void BlockPool::Reset() {
  for (int i = 0; i < options_.num_blocks; ++i) policy_->Remove(BlockId(i));
  std::fill(meta_.begin(), meta_.end(), BlockMeta{});
  index_.clear();
  free_.clear();
  for (int i = options_.num_blocks - 1; i >= 0; --i) free_.push_back(BlockId(i));
  if (events_ != nullptr) events_->Cleared();
}

}  // namespace tandem::kvcache
