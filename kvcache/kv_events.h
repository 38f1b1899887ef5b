// KV events (ARCHITECTURE §3), the write side: the tiers report every change of what they hold
// to a KvEventSink, and KvEventLog numbers them 1, 2, 3… per worker. The event types and the read
// side (KvEventSource: Read, last_id, TakeSnapshot, listeners) are the contract in
// include/tandem/kv_events.h; their kvcache names below are kept for the cache's code and tests.
//
// KvEventLog keeps the last `capacity` events in a ring and, alongside, the set of hashes each
// tier holds as of the newest event. A subscriber reads from the id after the last one it saw;
// when that id has left the ring it gets the snapshot instead (as of event `as_of_id`) and
// continues from as_of_id + 1. The worker daemon streams it; tests read it directly.
//
// Thread safety: KvEventLog is thread-safe (the engine thread and the tiers' writer append, stream
// threads read, wait and listen). KvEventSink implementations must be callable from the thread
// that owns the tier.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tandem/block_hash.h"
#include "tandem/kv_events.h"

namespace tandem::kvcache {

using tandem::kNumKvTiers;
using tandem::KvEvent;
using tandem::KvTier;
using tandem::KvTierName;

// What a tier tells about its changes.
class KvEventSink {
 public:
  virtual ~KvEventSink() = default;
  // `hashes` (a chain, in order) now held on `tier`.
  virtual void Stored(KvTier tier, std::optional<BlockHash> parent,
                      std::span<const BlockHash> hashes) = 0;
  virtual void Removed(KvTier tier, std::span<const BlockHash> hashes) = 0;
  virtual void Cleared() = 0;
};

class KvEventLog final : public KvEventSink, public KvEventSource {
 public:
  using Snapshot = KvSnapshot;
  using ReadResult = KvEventRead;

  explicit KvEventLog(size_t capacity = 4096);

  void Stored(KvTier tier, std::optional<BlockHash> parent,
              std::span<const BlockHash> hashes) override;
  void Removed(KvTier tier, std::span<const BlockHash> hashes) override;
  void Cleared() override;

  using KvEventSource::Read;
  ReadResult Read(uint64_t from_id, size_t max_events) const override;
  uint64_t last_id() const override;
  Snapshot TakeSnapshot() const override;
  ListenerId AddListener(std::function<void()> notify) override;
  void RemoveListener(ListenerId id) override;

  // Blocks until an event with id > after_id exists or `timeout` passes; true if one exists.
  bool WaitForEvents(uint64_t after_id, std::chrono::milliseconds timeout) const;

 private:
  void Append(KvEvent event);  // with mu_ held
  void Notify();               // without mu_ held

  const size_t capacity_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  uint64_t last_id_ = 0;
  std::deque<KvEvent> ring_;  // ids last_id_ - ring_.size() + 1 .. last_id_
  // Which tiers hold each hash (bit tier - 1).
  std::unordered_map<BlockHash, uint8_t> stored_;

  // Held while listeners run, so RemoveListener waits for a running one; apart from mu_, so
  // listeners may Read.
  std::mutex listeners_mu_;
  std::vector<std::pair<ListenerId, std::function<void()>>> listeners_;
  ListenerId next_listener_ = 1;
};

}  // namespace tandem::kvcache
