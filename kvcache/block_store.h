// G2 and G3 (ARCHITECTURE §3 "Tiers"): blocks kept by chained hash outside the engine's pool, each
// a copy of one whole block-major KV block (`block_bytes`). A store evicts its least recently
// used block when full, reports every change to its KvEventSink, and never returns data it cannot
// vouch for: a block that fails verification is dropped and reads as a miss.
//
// Thread safety: implementations are thread-safe (the engine thread onboards, an offload thread
// stores); each call is atomic with respect to the others.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "kvcache/kv_events.h"
#include "tandem/block_hash.h"
#include "tandem/kv_tier_stats.h"
#include "tandem/status.h"

namespace tandem::kvcache {

enum class PutResult : uint8_t {
  kStored,       // copied in (possibly evicting the least recently used block)
  kPresent,      // already held; its recency is refreshed
  kNotAdmitted,  // the store's admission filter declined it (disk: not reused often enough)
  kDisabled,     // the store is off after an error; nothing is kept
};

using tandem::BlockStoreStats;  // include/tandem/kv_tier_stats.h

class BlockStore {
 public:
  virtual ~BlockStore() = default;

  virtual KvTier tier() const = 0;
  virtual size_t block_bytes() const = 0;
  virtual int capacity() const = 0;  // blocks
  virtual int size() const = 0;      // blocks held now
  virtual bool Contains(BlockHash hash) const = 0;

  // Copies `data` (block_bytes() bytes) in under `hash`; `parent` is the hash before it in its
  // chain (for the Stored event). InvalidArgument for a wrong size.
  virtual StatusOr<PutResult> Put(BlockHash hash, std::optional<BlockHash> parent,
                                  std::span<const std::byte> data) = 0;
  // Copies the block out into `out` (block_bytes() bytes) and marks it recently used. NotFound on
  // a miss, which includes a block dropped because it failed verification and a disabled store.
  virtual Status Get(BlockHash hash, std::span<std::byte> out) = 0;
  virtual void Remove(BlockHash hash) = 0;
  // Drops every block (Removed events for them).
  virtual void Clear() = 0;
  virtual BlockStoreStats stats() const = 0;

  // How many leading hashes of the chain the store holds.
  int CountPrefix(std::span<const BlockHash> hashes) const {
    int n = 0;
    for (BlockHash h : hashes) {
      if (!Contains(h)) break;
      ++n;
    }
    return n;
  }
};

}  // namespace tandem::kvcache
