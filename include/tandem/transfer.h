// The KV transfer contract (ARCHITECTURE §3 "Transfer backend"): a backend registers memory and
// hands out a serializable descriptor of it; a peer connects to that descriptor and posts lists
// of {local offset, remote offset, bytes} reads or writes, which it polls to pending, done or
// error. Every transfer has a deadline: a peer that dies or stops answering ends it in an error
// by then, never a hang. Registrations, connections and transfers are RAII handles: dropping a
// transfer cancels it (and waits until no byte of it moves any more); dropping a registration
// ends the transfers that use it in an error.
//
// Backends are chosen by name from a registry: "inproc" (memcpy in one process, for tests and for
// both roles in one process), and later "ucx", "cuda_ipc" and "nccl".
//
// Thread safety: a Backend and its handles may be used from any thread; a Transfer from one
// thread at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem::transfer {

enum class MemoryKind : uint8_t { kHost, kDevice };

struct MemoryRegion {
  void* base = nullptr;
  size_t bytes = 0;
  MemoryKind kind = MemoryKind::kHost;
  int device = -1;  // kDevice: the CUDA device
};

// What a peer needs to reach a registered region, as bytes that travel (etcd, gRPC).
struct RemoteDescriptor {
  std::string backend;
  std::string bytes;
};

// A registered region; deregistered when dropped.
class Registration {
 public:
  virtual ~Registration() = default;
  virtual const MemoryRegion& region() const = 0;
  virtual const RemoteDescriptor& descriptor() const = 0;
};

// A connection to a peer's registered region.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual size_t remote_bytes() const = 0;
};

struct TransferOp {
  uint64_t local_offset = 0;
  uint64_t remote_offset = 0;
  uint64_t bytes = 0;
};

enum class Direction : uint8_t {
  kRead,   // remote → local
  kWrite,  // local → remote
};

enum class TransferState : uint8_t { kPending, kDone, kError };

// An in-flight transfer. Dropping it cancels it.
class Transfer {
 public:
  virtual ~Transfer() = default;
  virtual TransferState Poll() = 0;
  // The error once Poll() says kError (DeadlineExceeded, Cancelled, Unavailable: the peer is
  // gone); OK otherwise.
  virtual Status status() const = 0;
  // Stops the transfer: it ends in kError (Cancelled) unless it was already done.
  virtual void Cancel() = 0;
  // Polls until the transfer is no longer pending; its final status.
  Status Wait();
};

struct Capabilities {
  bool host_memory = false;
  bool device_memory = false;
  bool same_process_only = false;
  bool same_node_only = false;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual Capabilities capabilities() const = 0;

  // Registers `region`. A host region whose base is null asks the backend to allocate `bytes`
  // of memory its peers reach fastest (ucx: shared memory that peers on this node map and copy
  // from directly); region() then names it, and dropping the registration frees it.
  virtual StatusOr<std::unique_ptr<Registration>> Register(const MemoryRegion& region) = 0;
  virtual StatusOr<std::unique_ptr<Connection>> Connect(const RemoteDescriptor& peer) = 0;
  // Moves ops[i].bytes between `local` (a registration of this backend) at local_offset and the
  // region behind `peer` at remote_offset. InvalidArgument, before anything moves, for an op
  // outside either region or handles of another backend. The deadline bounds the whole list.
  virtual StatusOr<std::unique_ptr<Transfer>> Post(
      const Registration& local, Connection& peer, std::span<const TransferOp> ops,
      Direction direction, std::chrono::steady_clock::time_point deadline) = 0;
};

// The registry of backends by name.
struct BackendOptions {
  int worker_threads = 2;  // inproc: threads that copy
};
using BackendFactory =
    std::function<StatusOr<std::unique_ptr<Backend>>(const BackendOptions& options)>;
void RegisterBackend(std::string name, BackendFactory factory);
// NotFound for an unknown name, listing the known ones.
StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view name,
                                                 const BackendOptions& options = {});
std::vector<std::string> AvailableBackends();

}  // namespace tandem::transfer
