// The decode side of disaggregation (ARCHITECTURE §1, step 4): a request that arrives with a
// prefill worker's KV handle has its prompt's blocks pulled into this engine's pool instead of
// computed. The engine decides what to pull (only what its own prefix cache lacks) and into which
// blocks; a KvPuller, provided by the worker daemon, moves the bytes off the engine thread and
// confirms with the prefill worker that its lease held them all along. The engine knows nothing
// of transfers or of gRPC.
//
// Everything in a KvSource comes from a peer. The engine checks it against the request and its
// own layout, the transfer checks the offsets against the peer's registered memory, and the
// prefill worker checks the lease and its blocks when it is released; any failure makes the
// engine prefill the request itself (the client sees nothing of it).
//
// Thread safety: a KvPuller is called from the engine thread; its callbacks run on its own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tandem/kv_layout.h"
#include "tandem/status.h"

namespace tandem {

// Where a prefilled prompt's KV is, for the decode worker that pulls it: blocks of the prefill
// worker's pool (block-major, its KvLayout), in prompt order, holding num_tokens tokens.
struct KvHandle {
  uint64_t lease_id = 0;
  std::vector<int32_t> block_ids;
  int num_tokens = 0;
  // How long the lease has left when the handle is made.
  int64_t expires_in_ms = 0;
};

// A prefill worker's KV as a decode worker receives it.
struct KvSource {
  std::string peer;                 // The prefill worker (its gRPC address): lease release.
  std::string transfer_backend;     // The backend its pool is registered with.
  std::string transfer_descriptor;  // transfer::RemoteDescriptor bytes of its pool.
  KvLayout layout;                  // Its pool's layout; must equal the decode worker's.
  KvHandle handle;
};

// A pull in flight. Dropping it cancels it and returns once no byte of it moves any more and its
// `done` has either run or never will (its lease is then released without waiting for an
// answer).
class KvPull {
 public:
  virtual ~KvPull() = default;
};

// What a pull moved, for the worker's metrics.
struct KvPullResult {
  Status status;
  uint64_t bytes = 0;
  double seconds = 0;  // From Start until the blocks were in place and the lease released.
};

class KvPuller {
 public:
  virtual ~KvPuller() = default;
  // Starts copying the source's blocks remote[i] into this engine's pool blocks local[i], then
  // releases the lease at the peer. `done` runs once, on the puller's thread, with OK only when
  // every byte arrived and the peer confirmed the lease still held those blocks (so no byte was
  // read from a block that had been freed meanwhile); with the error otherwise. It must be quick
  // and must not block.
  virtual std::unique_ptr<KvPull> Start(const KvSource& source, std::span<const int32_t> remote,
                                        std::span<const int32_t> local,
                                        std::function<void(const KvPullResult&)> done) = 0;
  // The source's lease is not needed (this engine holds the whole prefix already, or gave up on
  // the source before pulling): releases it at the peer without waiting for the answer.
  virtual void Release(const KvSource& source) = 0;
};

}  // namespace tandem
