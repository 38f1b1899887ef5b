#include "kvcache/slot_index.h"

#include "common/status_macros.h"
#include "tandem/ids.h"

namespace tandem::kvcache {

SlotIndex::SlotIndex(int capacity, const Clock& clock)
    : policy_(MakeLruPolicy(clock)), hash_of_(static_cast<size_t>(capacity)) {
  TANDEM_CHECK(capacity > 0);
  free_.reserve(static_cast<size_t>(capacity));
  for (int s = capacity - 1; s >= 0; --s) free_.push_back(s);
}

std::optional<int> SlotIndex::Find(BlockHash hash) const {
  auto it = index_.find(hash);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

void SlotIndex::Touch(int slot) {
  TANDEM_CHECK(hash_of_[static_cast<size_t>(slot)].has_value());
  policy_->Add(BlockId(slot));  // adding again moves it to the most recent end
}

std::optional<int> SlotIndex::Acquire(std::optional<BlockHash>* evicted) {
  evicted->reset();
  if (!free_.empty()) {
    const int slot = free_.back();
    free_.pop_back();
    return slot;
  }
  const std::optional<BlockId> victim = policy_->Victim();
  if (!victim.has_value()) return std::nullopt;  // every slot is acquired, none published
  const int slot = victim->value();
  policy_->Remove(*victim);
  std::optional<BlockHash>& held = hash_of_[static_cast<size_t>(slot)];
  index_.erase(*held);
  *evicted = held;
  held.reset();
  return slot;
}

void SlotIndex::Publish(int slot, BlockHash hash) {
  TANDEM_CHECK(!hash_of_[static_cast<size_t>(slot)].has_value());
  hash_of_[static_cast<size_t>(slot)] = hash;
  index_[hash] = slot;
  policy_->Add(BlockId(slot));
}

void SlotIndex::Abandon(int slot) {
  TANDEM_CHECK(!hash_of_[static_cast<size_t>(slot)].has_value());
  free_.push_back(slot);
}

std::optional<int> SlotIndex::Drop(BlockHash hash) {
  auto it = index_.find(hash);
  if (it == index_.end()) return std::nullopt;
  const int slot = it->second;
  index_.erase(it);
  policy_->Remove(BlockId(slot));
  hash_of_[static_cast<size_t>(slot)].reset();
  free_.push_back(slot);
  return slot;
}

std::vector<BlockHash> SlotIndex::DropAll() {
  std::vector<BlockHash> dropped;
  dropped.reserve(index_.size());
  for (const auto& [hash, slot] : index_) {
    dropped.push_back(hash);
    policy_->Remove(BlockId(slot));
    hash_of_[static_cast<size_t>(slot)].reset();
    free_.push_back(slot);
  }
  index_.clear();
  return dropped;
}

SlotStore::SlotStore(int capacity, const Clock& clock, KvEventSink* events)
    : index_(capacity, clock), events_(events) {}

int SlotStore::size() const {
  std::lock_guard lock(mu_);
  return index_.size();
}

bool SlotStore::Contains(BlockHash hash) const {
  std::lock_guard lock(mu_);
  return index_.Find(hash).has_value();
}

void SlotStore::Remove(BlockHash hash) {
  std::lock_guard lock(mu_);
  if (index_.Drop(hash).has_value()) ReportRemoved({&hash, 1});
}

void SlotStore::Clear() {
  std::lock_guard lock(mu_);
  ReportRemoved(index_.DropAll());
}

BlockStoreStats SlotStore::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void SlotStore::ReportStored(BlockHash hash, std::optional<BlockHash> parent) {
  if (events_ != nullptr) events_->Stored(tier(), parent, {&hash, 1});
}

void SlotStore::ReportRemoved(std::span<const BlockHash> hashes) {
  if (events_ != nullptr) events_->Removed(tier(), hashes);
}

}  // namespace tandem::kvcache
