// Counters of the KV tiers behind an engine's pool (ARCHITECTURE §3 "Tiers"): what each store
// holds, found, moved and failed. kvcache fills them; the worker publishes them as metrics.
//
// Thread safety: value types.
#pragma once

#include <cstdint>

namespace tandem {

// One store (the host tier G2, or the disk tier G3).
struct BlockStoreStats {
  uint64_t hits = 0;       // Get found the block
  uint64_t misses = 0;     // Get did not (including dropped corrupt blocks)
  uint64_t stored = 0;     // Put results kStored
  uint64_t evicted = 0;    // blocks dropped to make room
  uint64_t corrupt = 0;    // blocks that failed verification on read
  uint64_t errors = 0;     // I/O errors (each disables a disk store)
  uint64_t bytes_in = 0;   // bytes copied into the store
  uint64_t bytes_out = 0;  // bytes copied out of it
  bool disabled = false;
};

// Both tiers; all zero when an engine has none.
struct KvTiersStats {
  BlockStoreStats host, disk;
  int host_blocks = 0, host_capacity = 0;  // held now, and room (0: no host tier)
  int disk_blocks = 0, disk_capacity = 0;
  uint64_t offloaded = 0;       // G1 blocks copied to G2
  uint64_t spilled = 0;         // blocks the writer stored on G3 (G2 evictions, or G1 blocks)
  uint64_t spill_waits = 0;     // offers that waited for the writer (its queue was full)
  uint64_t onboarded_host = 0;  // G1 blocks loaded from G2
  uint64_t onboarded_disk = 0;  // G1 blocks loaded from G3
};

}  // namespace tandem
