// KV leases (ARCHITECTURE §1, step 3): a prefill worker keeps a prompt's blocks pinned for a
// decode worker's pull under a lease, until the decode worker releases it or it expires. Each
// lease holds one reference on each of its blocks in the BlockPool, so the blocks are neither
// freed nor evicted meanwhile; releasing or expiring drops exactly those references.
//
// Everything about a lease that comes back from a peer (its id, the blocks it claims) is checked
// here and answered with a Status: an unknown or expired lease is NotFound, blocks that are not
// the lease's (or not in its order) are InvalidArgument. Nothing a peer sends reaches a check.
//
// Lease ids are drawn at random (64 bits, never 0), so an id from an earlier incarnation of the
// worker or another worker is unknown here rather than someone else's lease.
//
// Thread safety: not thread-safe; owned by the engine thread, like the pool.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "kvcache/block_pool.h"
#include "kvcache/clock.h"
#include "tandem/ids.h"
#include "tandem/status.h"

namespace tandem::kvcache {

struct KvLease {
  uint64_t id = 0;
  std::vector<BlockId> blocks;
  int num_tokens = 0;      // Tokens whose KV the blocks hold.
  int64_t expires_ns = 0;  // On the leases' clock.
};

class KvLeases {
 public:
  // `pool` and `clock` must outlive the leases; `ttl` is how long a lease lives unreleased.
  KvLeases(BlockPool* pool, const Clock* clock, std::chrono::nanoseconds ttl, uint64_t seed = 0);
  ~KvLeases();  // Releases every lease still held.
  KvLeases(const KvLeases&) = delete;
  KvLeases& operator=(const KvLeases&) = delete;

  // Pins `blocks` (each held by the caller now: the lease takes references of its own).
  const KvLease& Grant(std::span<const BlockId> blocks, int num_tokens);
  // Unpins a lease's blocks. NotFound when the lease is unknown, released or expired.
  Status Release(uint64_t lease_id);
  // The lease, when it is live and `blocks` are a run of its blocks, in its order (what a decode
  // worker read: the blocks after its own cached prefix); NotFound or InvalidArgument otherwise.
  StatusOr<const KvLease*> Check(uint64_t lease_id, std::span<const BlockId> blocks) const;
  // Releases the leases whose time has passed; returns how many.
  int ExpireDue();
  // When the next lease expires (on the clock), or nullopt with none held.
  std::optional<int64_t> next_expiry_ns() const;

  size_t size() const { return leases_.size(); }
  int64_t expired_total() const { return expired_; }

 private:
  BlockPool* const pool_;
  const Clock* const clock_;
  const std::chrono::nanoseconds ttl_;
  std::mt19937_64 rng_;
  std::unordered_map<uint64_t, KvLease> leases_;
  int64_t expired_ = 0;
};

}  // namespace tandem::kvcache
