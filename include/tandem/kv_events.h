// KV events (ARCHITECTURE §3 "KV events"), as readers see them: every change of what a worker's
// KV tiers hold, numbered 1, 2, 3… per worker. `Stored{tier, parent_hash, block_hashes}`,
// `Removed{tier, block_hashes}` and `Cleared{}` (everything on every tier is gone).
//
// A KvEventSource keeps the newest events in a ring and the set of hashes each tier holds. A
// reader reads from the id after the last one it saw; when that id has left the ring it gets the
// snapshot instead and continues from the snapshot's id + 1. A reader is woken through a listener
// that the appending thread runs after each append. kvcache::KvEventLog implements it; the
// worker's SubscribeKvEvents stream reads it.
//
// Thread safety: KvEventSource implementations are thread-safe. Listeners run on the appending
// thread (the engine thread, a tier's writer thread) and must be quick and never block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "tandem/block_hash.h"

namespace tandem {

// Where a block lives: G1 the engine's device (or, on the CPU backend, host) pool, G2 the pinned
// host tier, G3 the disk tier.
enum class KvTier : uint8_t { kDevice = 1, kHost = 2, kDisk = 3 };
inline constexpr int kNumKvTiers = 3;

// "device", "host", "disk".
constexpr std::string_view KvTierName(KvTier tier) {
  switch (tier) {
    case KvTier::kDevice:
      return "device";
    case KvTier::kHost:
      return "host";
    case KvTier::kDisk:
      return "disk";
  }
  return "unknown";
}

struct KvEvent {
  enum class Kind : uint8_t { kStored, kRemoved, kCleared };
  uint64_t id = 0;
  Kind kind = Kind::kStored;
  KvTier tier = KvTier::kDevice;         // Stored, Removed
  std::optional<BlockHash> parent_hash;  // Stored: the hash before block_hashes[0], if any
  std::vector<BlockHash> block_hashes;   // Stored, Removed

  friend bool operator==(const KvEvent&, const KvEvent&) = default;
};

// Everything the tiers hold as of one event.
struct KvSnapshot {
  uint64_t as_of_id = 0;  // The snapshot holds the effect of events 1 .. as_of_id.
  // Per tier (index KvTier - 1), the hashes it holds, in no particular order.
  std::vector<BlockHash> stored[kNumKvTiers];
};

struct KvEventRead {
  std::optional<KvSnapshot> snapshot;  // Set when `from_id` had left the ring.
  std::vector<KvEvent> events;         // Consecutive ids, from from_id (or as_of_id + 1).
};

class KvEventSource {
 public:
  using ListenerId = uint64_t;

  virtual ~KvEventSource() = default;

  // Events with id >= from_id (at most max_events). from_id <= 1 on a source whose first event
  // is still in the ring reads from the start; an id that has left the ring reads the snapshot
  // (as of the newest event, no events with it); from_id past last_id() + 1 reads nothing.
  virtual KvEventRead Read(uint64_t from_id, size_t max_events) const = 0;
  KvEventRead Read(uint64_t from_id) const { return Read(from_id, SIZE_MAX); }

  // The id of the newest event; 0 before the first.
  virtual uint64_t last_id() const = 0;
  virtual KvSnapshot TakeSnapshot() const = 0;

  // Runs `notify` after every append, on the appending thread, once the event is readable and
  // outside the lock that readers take (so it may Read). It must be quick and must not block,
  // nor add or remove listeners (listeners run under the listener lock). Wakes are not
  // coalesced here: a consumer merges them (the worker's dispatcher does).
  virtual ListenerId AddListener(std::function<void()> notify) = 0;
  // Once this returns the listener is not running and never runs again.
  virtual void RemoveListener(ListenerId id) = 0;
};

// A listener registration, removed on destruction (or by Reset).
//
// Thread safety: not thread-safe; one owner.
class KvEventListener {
 public:
  KvEventListener() = default;
  // `source` must outlive the registration.
  KvEventListener(KvEventSource* source, std::function<void()> notify)
      : source_(source), id_(source->AddListener(std::move(notify))) {}
  ~KvEventListener() { Reset(); }
  KvEventListener(KvEventListener&& other) noexcept
      : source_(std::exchange(other.source_, nullptr)), id_(other.id_) {}
  KvEventListener& operator=(KvEventListener&& other) noexcept {
    if (this != &other) {
      Reset();
      source_ = std::exchange(other.source_, nullptr);
      id_ = other.id_;
    }
    return *this;
  }

  // Removes the listener now (see RemoveListener); then the object is empty.
  void Reset() {
    if (source_ != nullptr) source_->RemoveListener(id_);
    source_ = nullptr;
  }

 private:
  KvEventSource* source_ = nullptr;
  KvEventSource::ListenerId id_ = 0;
};

}  // namespace tandem
