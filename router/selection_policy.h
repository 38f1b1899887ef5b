// Worker selection policies: given the workers that are up and their (reported + predicted)
// load, pick one. "round-robin" cycles through them; "least-loaded" takes the one with the
// fewest requests (ties: fewest active KV blocks, then round-robin order). The KV-aware policy
// (ARCHITECTURE §3 "Router cost") will be one more implementation of this interface.
//
// Thread safety: a policy keeps state (a cursor) and is not thread-safe; WorkerSet calls it
// under its own mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tandem/ids.h"
#include "tandem/status.h"

namespace tandem::router {

// ARCHITECTURE §3 "Load report", as a worker last sent it.
struct LoadReport {
  int active_requests = 0;
  int waiting_requests = 0;
  int active_blocks = 0;
  int free_blocks = 0;
  int64_t queued_prefill_tokens = 0;
};

// One worker as the policies see it.
struct WorkerState {
  WorkerId id;
  std::string address;
  bool up = false;
  LoadReport load;
  // Requests this process dispatched since the worker's last report (not yet in `load`).
  int dispatched_since_report = 0;
  // Requests this process has on the worker now.
  int in_flight = 0;

  // Requests the worker is predicted to hold now: the report plus what was sent since, and
  // never fewer than what this process alone has there.
  int PredictedRequests() const;
};

class SelectionPolicy {
 public:
  virtual ~SelectionPolicy() = default;
  virtual std::string_view name() const = 0;
  // `candidates`: non-empty, all up, ordered by id. Returns an index into it.
  virtual size_t Select(std::span<const WorkerState> candidates) = 0;
};

// "round-robin" or "least-loaded"; anything else is InvalidArgument listing the names.
StatusOr<std::unique_ptr<SelectionPolicy>> CreatePolicy(std::string_view name);

}  // namespace tandem::router
