// KV events (ARCHITECTURE §3): every change of what a worker's KV tiers hold, numbered 1, 2, 3…
// per worker. `Stored{tier, parent_hash, block_hashes}`, `Removed{tier, block_hashes}` and
// `Cleared{}` (everything on every tier is gone, e.g. the pool restarted).
//
// KvEventLog keeps the last `capacity` events in a ring and, alongside, the set of hashes each
// tier holds as of the newest event. A subscriber reads from the id after the last one it saw;
// when that id has left the ring it gets the snapshot instead (as of event `snapshot_id`) and
// continues from snapshot_id + 1. The worker daemon streams it; tests read it directly.
//
// Thread safety: KvEventLog is thread-safe (the engine thread appends, stream threads read and
// wait). KvEventSink implementations must be callable from the thread that owns the tier.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tandem/block_hash.h"

namespace tandem::kvcache {

// Where a block lives: G1 the engine's device (or, on the CPU backend, host) pool, G2 the pinned
// host tier, G3 the disk tier.
enum class KvTier : uint8_t { kDevice = 1, kHost = 2, kDisk = 3 };
inline constexpr int kNumKvTiers = 3;
std::string_view KvTierName(KvTier tier);  // "device", "host", "disk"

struct KvEvent {
  enum class Kind : uint8_t { kStored, kRemoved, kCleared };
  uint64_t id = 0;
  Kind kind = Kind::kStored;
  KvTier tier = KvTier::kDevice;         // Stored, Removed
  std::optional<BlockHash> parent_hash;  // Stored: the hash before block_hashes[0], if any
  std::vector<BlockHash> block_hashes;   // Stored, Removed

  friend bool operator==(const KvEvent&, const KvEvent&) = default;
};

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

class KvEventLog final : public KvEventSink {
 public:
  explicit KvEventLog(size_t capacity = 4096);

  void Stored(KvTier tier, std::optional<BlockHash> parent,
              std::span<const BlockHash> hashes) override;
  void Removed(KvTier tier, std::span<const BlockHash> hashes) override;
  void Cleared() override;

  struct Snapshot {
    uint64_t as_of_id = 0;  // the snapshot holds the effect of events 1 .. as_of_id
    // Per tier (index KvTier - 1), the hashes it holds, in no particular order.
    std::vector<BlockHash> stored[kNumKvTiers];
  };
  struct ReadResult {
    std::optional<Snapshot> snapshot;  // set when `from_id` had left the ring
    std::vector<KvEvent> events;       // consecutive ids, from from_id (or as_of_id + 1)
  };
  // Events with id >= from_id (at most max_events). from_id <= 1 on a log whose first event is
  // still in the ring reads from the start; from_id past last_id() + 1 reads nothing.
  ReadResult Read(uint64_t from_id, size_t max_events = SIZE_MAX) const;

  uint64_t last_id() const;
  Snapshot TakeSnapshot() const;

  // Blocks until an event with id > after_id exists or `timeout` passes; true if one exists.
  bool WaitForEvents(uint64_t after_id, std::chrono::milliseconds timeout) const;

 private:
  void Append(KvEvent event);  // with mu_ held

  const size_t capacity_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  uint64_t last_id_ = 0;
  std::deque<KvEvent> ring_;  // ids last_id_ - ring_.size() + 1 .. last_id_
  // Which tiers hold each hash (bit tier - 1).
  std::unordered_map<BlockHash, uint8_t> stored_;
};

}  // namespace tandem::kvcache
