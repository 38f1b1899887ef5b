#include "kvcache/kv_events.h"

#include <algorithm>
#include <utility>

#include "common/status_macros.h"

namespace tandem::kvcache {
namespace {

uint8_t TierBit(KvTier tier) { return static_cast<uint8_t>(1u << (static_cast<int>(tier) - 1)); }

}  // namespace

KvEventLog::KvEventLog(size_t capacity) : capacity_(capacity) { TANDEM_CHECK(capacity > 0); }

void KvEventLog::Stored(KvTier tier, std::optional<BlockHash> parent,
                        std::span<const BlockHash> hashes) {
  if (hashes.empty()) return;
  std::unique_lock lock(mu_);
  for (BlockHash h : hashes) stored_[h] |= TierBit(tier);
  KvEvent event;
  event.kind = KvEvent::Kind::kStored;
  event.tier = tier;
  event.parent_hash = parent;
  event.block_hashes.assign(hashes.begin(), hashes.end());
  Append(std::move(event));
  lock.unlock();
  Notify();
}

void KvEventLog::Removed(KvTier tier, std::span<const BlockHash> hashes) {
  if (hashes.empty()) return;
  std::unique_lock lock(mu_);
  for (BlockHash h : hashes) {
    auto it = stored_.find(h);
    if (it == stored_.end()) continue;
    it->second &= static_cast<uint8_t>(~TierBit(tier));
    if (it->second == 0) stored_.erase(it);
  }
  KvEvent event;
  event.kind = KvEvent::Kind::kRemoved;
  event.tier = tier;
  event.block_hashes.assign(hashes.begin(), hashes.end());
  Append(std::move(event));
  lock.unlock();
  Notify();
}

void KvEventLog::Cleared() {
  std::unique_lock lock(mu_);
  stored_.clear();
  KvEvent event;
  event.kind = KvEvent::Kind::kCleared;
  Append(std::move(event));
  lock.unlock();
  Notify();
}

void KvEventLog::Append(KvEvent event) {
  event.id = ++last_id_;
  ring_.push_back(std::move(event));
  if (ring_.size() > capacity_) ring_.pop_front();
  cv_.notify_all();
}

// After the append is readable and outside mu_, so a listener may Read; under listeners_mu_, so
// RemoveListener returns only once no call of the removed listener is running.
void KvEventLog::Notify() {
  std::lock_guard lock(listeners_mu_);
  for (const auto& [id, notify] : listeners_) notify();
}

KvEventSource::ListenerId KvEventLog::AddListener(std::function<void()> notify) {
  std::lock_guard lock(listeners_mu_);
  const ListenerId id = next_listener_++;
  listeners_.emplace_back(id, std::move(notify));
  return id;
}

void KvEventLog::RemoveListener(ListenerId id) {
  std::lock_guard lock(listeners_mu_);
  std::erase_if(listeners_, [id](const auto& l) { return l.first == id; });
}

KvEventLog::Snapshot KvEventLog::TakeSnapshot() const {
  std::lock_guard lock(mu_);
  Snapshot snapshot;
  snapshot.as_of_id = last_id_;
  for (const auto& [hash, tiers] : stored_) {
    for (int t = 0; t < kNumKvTiers; ++t) {
      if (tiers & (1u << t)) snapshot.stored[t].push_back(hash);
    }
  }
  return snapshot;
}

KvEventLog::ReadResult KvEventLog::Read(uint64_t from_id, size_t max_events) const {
  ReadResult result;
  {
    std::lock_guard lock(mu_);
    const uint64_t first_kept = last_id_ - ring_.size() + 1;  // id of ring_.front()
    from_id = std::max<uint64_t>(from_id, 1);
    if (from_id >= first_kept) {
      for (uint64_t id = from_id; id <= last_id_ && result.events.size() < max_events; ++id) {
        result.events.push_back(ring_[id - first_kept]);
      }
      return result;
    }
  }
  // The asked-for id has left the ring: the snapshot, as of the newest event, so nothing follows
  // it yet.
  result.snapshot = TakeSnapshot();
  return result;
}

uint64_t KvEventLog::last_id() const {
  std::lock_guard lock(mu_);
  return last_id_;
}

bool KvEventLog::WaitForEvents(uint64_t after_id, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return last_id_ > after_id; });
}

}  // namespace tandem::kvcache
