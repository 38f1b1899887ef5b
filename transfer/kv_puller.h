// The decode worker's KvPuller (include/tandem/kv_pull.h) over a transfer backend: one thread
// connects to the prefill worker's registered pool (connections are kept, by descriptor), posts
// one-sided reads of the wanted blocks into this worker's registered pool (neighbouring blocks
// merged into one op), polls them, and then has the lease released with the block list, so that
// the prefill worker confirms it held those blocks for the whole read. A pull ends in an error —
// and the engine prefills the request itself — when the source names another backend, the
// descriptor does not connect, an offset lies outside either pool, the read fails or passes its
// deadline, or the release is not confirmed.
//
// Simulated transfers: with a backend-less source (a mock prefill worker registers no memory)
// and `simulated_bytes_per_second` set, a pull takes bytes ÷ that rate (divided by the mock's
// speedup) and moves nothing: what the mock cluster needs to study P/D at scale.
//
// Thread safety: KvPuller's methods from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "tandem/kv_pull.h"
#include "tandem/transfer.h"

namespace tandem::transfer {

struct KvPullerOptions {
  // The worker's backend and its pool registered with it; null: real pulls fail at once (the
  // worker was started without --transfer), and their leases are still released.
  Backend* backend = nullptr;
  const Registration* local = nullptr;
  size_t block_bytes = 0;  // This pool's KvLayout::BlockBytes().
  // Deadline of one pull's reads.
  std::chrono::milliseconds timeout{10000};
  // > 0: pulls from a source without a backend are simulated at this rate.
  double simulated_bytes_per_second = 0;
  double simulated_speedup = 1.0;
  // Releases a lease at the peer: `blocks` are the blocks read (checked there) or empty; `done`
  // (null: nobody waits) gets OK only when the peer released it.
  using Release = std::function<void(const KvSource& source, std::vector<int32_t> blocks,
                                     std::function<void(const Status&)> done)>;
  Release release;
  size_t max_connections = 64;  // Connections kept to prefill workers.
};

std::shared_ptr<KvPuller> CreateKvPuller(KvPullerOptions options);

}  // namespace tandem::transfer
