// WorkerSet: the workers a frontend can send requests to (a static list for now; etcd discovery
// later feeds the same set), whether each is up, and its load, as reported by the worker and as
// predicted between reports from what this process dispatched. SelectWorker asks a
// SelectionPolicy (selection_policy.h) to pick among the workers that are up.
//
// Thread safety: every method may be called from any thread (one internal mutex; the policy runs
// under it, so a policy needs no locking of its own).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "router/selection_policy.h"
#include "tandem/ids.h"
#include "tandem/status.h"

namespace tandem::router {

// "host:port[,host:port...]" -> endpoints. Empty items, a missing or non-numeric port, or a
// port outside 1..65535 are InvalidArgument naming `option`. Duplicates are refused too.
StatusOr<std::vector<std::string>> ParseEndpoints(std::string_view list, std::string_view option);

class WorkerSet {
 public:
  WorkerSet() = default;
  WorkerSet(const WorkerSet&) = delete;
  WorkerSet& operator=(const WorkerSet&) = delete;

  // Adds a worker, initially down. Ids are assigned 0, 1, 2, ... in order of addition.
  WorkerId Add(std::string address);

  // Marks a worker up (reachable and serving) or down. Going down forgets its load.
  void SetUp(WorkerId id, bool up);

  // Records a load report; requests dispatched before it are now part of the report.
  void UpdateLoad(WorkerId id, const LoadReport& load);

  // Picks a worker that is up and counts one more request on it, or nullopt when none is up.
  // Every successful selection must be matched by one Release.
  std::optional<WorkerId> SelectWorker(SelectionPolicy& policy);

  // The request dispatched to `id` has finished (or failed).
  void Release(WorkerId id);

  std::vector<WorkerState> Snapshot() const;
  size_t size() const;
  size_t num_up() const;
  // The address a worker was added with ("" for an unknown id).
  std::string address(WorkerId id) const;

 private:
  WorkerState* Find(WorkerId id);

  mutable std::mutex mu_;
  std::vector<WorkerState> workers_;  // Guarded by mu_; index == id.
};

}  // namespace tandem::router
