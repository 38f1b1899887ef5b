// The backend registry, and what every transfer shares.
#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "tandem/transfer.h"
#include "transfer/inproc.h"
#ifdef TANDEM_HAVE_UCX
#include "transfer/ucx.h"
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
