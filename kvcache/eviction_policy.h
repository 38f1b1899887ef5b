// Which unreferenced cached block gives way when the pool needs a free one.
//
// The pool tells the policy when a cached block becomes evictable (its last reference dropped)
// and when it stops being so (reused by a prefix hit, or evicted); the policy names a victim.
//
// Thread safety: none; owned and called by the pool's owner (the engine thread).
#pragma once

#include <memory>
#include <optional>

#include "kvcache/clock.h"
#include "tandem/ids.h"

namespace tandem::kvcache {

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  // `block` became evictable now.
  virtual void Add(BlockId block) = 0;
  // `block` is no longer evictable (reused or evicted). Unknown blocks are ignored.
  virtual void Remove(BlockId block) = 0;
  // The block to evict next, without removing it; nullopt when none is evictable.
  virtual std::optional<BlockId> Victim() const = 0;
  virtual int size() const = 0;
};

// Least recently freed first; among blocks freed at the same instant, the one added first.
std::unique_ptr<EvictionPolicy> MakeLruPolicy(const Clock& clock);

}  // namespace tandem::kvcache
