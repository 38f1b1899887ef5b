// The backend registry, and what every transfer shares.
#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "tandem/transfer.h"
#include "transfer/inproc.h"
#include "transfer/ops.h"
#ifdef TANDEM_HAVE_UCX
#include "transfer/ucx.h"
#endif
#ifdef TANDEM_HAVE_CUDA
#include "transfer/cuda_ipc.h"
#endif
#ifdef TANDEM_HAVE_NCCL
#include "transfer/nccl.h"
#endif

namespace tandem::transfer {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, BackendFactory, std::less<>> factories;
};

Registry& TheRegistry() {
  static Registry* registry = [] {
    auto* r = new Registry();
    r->factories["inproc"] = [](const BackendOptions& options) {
      return MakeInprocBackend(options);
    };
#ifdef TANDEM_HAVE_CUDA
    r->factories["cuda_ipc"] = [](const BackendOptions& options) {
      return MakeCudaIpcBackend(options);
    };
#endif
#ifdef TANDEM_HAVE_NCCL
    r->factories["nccl"] = [](const BackendOptions& options) { return MakeNcclBackend(options); };
#endif
#ifdef TANDEM_HAVE_UCX
    r->factories["ucx"] = [](const BackendOptions& options) { return MakeUcxBackend(options); };
#endif
    return r;
  }();
  return *registry;
}

}  // namespace

Status Transfer::Wait() {
  // Yield for the first millisecond (a 2 MiB block takes ~50 µs; a sleep would double it), then
  // sleep in short steps rather than spin a core.
  const auto start = std::chrono::steady_clock::now();
  while (Poll() == TransferState::kPending) {
    if (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1)) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  return status();
}

Status CheckOps(std::string_view backend, std::span<const TransferOp> ops, uint64_t local_bytes,
                uint64_t remote_bytes) {
  const auto inside = [](uint64_t offset, uint64_t bytes, uint64_t size) {
    return offset <= size && bytes <= size - offset;  // no overflow
  };
  for (const TransferOp& op : ops) {
    if (!inside(op.local_offset, op.bytes, local_bytes) ||
        !inside(op.remote_offset, op.bytes, remote_bytes)) {
      return InvalidArgumentError(std::string(backend) + ": an op outside its region (local " +
                                  std::to_string(op.local_offset) + ", remote " +
                                  std::to_string(op.remote_offset) + ", " +
                                  std::to_string(op.bytes) + " bytes)");
    }
  }
  return OkStatus();
}

void RegisterBackend(std::string name, BackendFactory factory) {
  Registry& r = TheRegistry();
  std::lock_guard lock(r.mu);
  r.factories[std::move(name)] = std::move(factory);
}

StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view name,
                                                 const BackendOptions& options) {
  BackendFactory factory;
  {
    Registry& r = TheRegistry();
    std::lock_guard lock(r.mu);
    auto it = r.factories.find(name);
    if (it == r.factories.end()) {
      std::string known;
      for (const auto& [n, f] : r.factories) known += (known.empty() ? "" : ", ") + n;
      return NotFoundError("transfer backend \"" + std::string(name) + "\" is unknown (known: " +
                           known + ")");
    }
    factory = it->second;
  }
  return factory(options);
}

std::vector<std::string> AvailableBackends() {
  Registry& r = TheRegistry();
  std::lock_guard lock(r.mu);
  std::vector<std::string> names;
  for (const auto& [n, f] : r.factories) names.push_back(n);
  return names;
}

}  // namespace tandem::transfer
