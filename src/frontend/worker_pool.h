// WorkerPool: the frontend's connections to its workers (a static list of gRPC endpoints). A
// monitor thread asks each worker that is down for its WorkerInfo (GetInfo, with a deadline)
// and, once it answers, follows its load reports (StreamLoad) into the router's WorkerSet; when
// that stream ends the worker is down again until it answers anew. Requests are routed with the
// configured selection policy among the workers that are up.
//
// The pool also watches the requests in flight. Each Acquire registers one with a callback that
// ends it; the monitor calls it when
//   - its worker has gone quiet: no load report for `stall_timeout_ms` (a stopped or wedged
//     process keeps its connections open, so nothing else would tell). The worker leaves routing
//     and health at once and comes back when it answers a probe again;
//   - the request itself has had no message from its worker for `progress_timeout_ms`;
//   - the frontend stops waiting for it (FailAll, at the drain deadline).
//
// Thread safety: every public method may be called from any thread. The monitor thread is the
// only one that ever blocks (on GetInfo), never an Asio or gRPC callback thread. Callbacks
// (on_lost, on_up_changed) run on the monitor thread or a gRPC thread, outside the pool's lock.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "frontend/worker_client.h"
#include "router/worker_set.h"
#include "tandem/status.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::frontend {

struct WorkerPoolOptions {
  // gRPC endpoints "host:port" of the workers.
  std::vector<std::string> endpoints;
  // Selection policy name (router/selection_policy.h).
  std::string router_mode = "round-robin";
  // How often the monitor retries a worker that is down and checks the watched requests.
  int probe_interval_ms = 200;
  // Deadline of one GetInfo probe.
  int probe_timeout_ms = 1000;
  // Load report interval asked of the workers.
  int load_interval_ms = 100;
  // A worker whose load stream is silent this long is taken out of routing and its requests
  // end with UNAVAILABLE.
  int stall_timeout_ms = 3000;
  // A request with no message from its worker this long ends with DEADLINE_EXCEEDED; 0: never.
  int progress_timeout_ms = 120000;
  // Runs whenever the number of workers up changes, with the new number.
  std::function<void(size_t)> on_up_changed;
};

// One request in flight on a worker, as the pool watches it. Shared by the pool's registry and
// the request's route slot: the monitor may fire it while the request is being released.
struct InFlight {
  WorkerId worker;
  std::string request_id;  // For the pool's log lines.
  // steady_clock nanoseconds of the last message from the worker (or of the start).
  std::atomic<int64_t> last_progress_ns{0};
  std::atomic<bool> lost{false};  // on_lost has run.
  // Ends the request; runs at most once, on the monitor thread, outside the pool's lock. Must
  // not block (post to the request's executor).
  std::function<void(const Status&)> on_lost;

  void Touch();
};

// A route slot (ARCHITECTURE §1 "Words"): a worker chosen for one request, holding its share of
// the worker's load accounting; give it back with WorkerPool::Release exactly once.
struct RouteSlot {
  WorkerId id;
  v1::Worker::Stub* stub = nullptr;  // Owned by the pool; valid while the pool lives.
  v1::WorkerInfo info;
  std::string address;
  std::shared_ptr<InFlight> in_flight;
};

class WorkerPool {
 public:
  static StatusOr<std::unique_ptr<WorkerPool>> Create(const WorkerPoolOptions& options);
  ~WorkerPool();  // Stops the monitor and cancels the load streams.
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Picks a worker that is up and registers the request (see the header comment); nullopt when
  // no worker is up.
  std::optional<RouteSlot> Acquire(const std::string& request_id,
                                   std::function<void(const Status&)> on_lost);
  void Release(const RouteSlot& slot);
  // A call to the worker failed as unreachable: take it out of rotation until it answers again.
  void MarkDown(WorkerId id);
  // Ends every request in flight with `status` (through its on_lost); returns how many.
  int FailAll(const Status& status);

  size_t num_up() const { return workers_.num_up(); }
  size_t num_workers() const { return entries_.size(); }
  // Requests acquired and not yet released.
  int in_flight() const;
  // The WorkerInfo of some worker that is up (they all serve the same model).
  std::optional<v1::WorkerInfo> AnyInfo() const;

  // Simulated (mock) workers' time accounts, summed over the workers as last reported.
  struct SimulationTotals {
    double expected_seconds = 0;
    double actual_seconds = 0;
  };
  // nullopt when no worker has reported one (real backends).
  std::optional<SimulationTotals> simulation_totals() const;
  // Workers kept out of routing because their model identity or block size differs from the
  // cluster's (the first worker that answered).
  int refused_workers() const { return refused_.load(std::memory_order_relaxed); }

 private:
  struct Worker {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::Worker::Stub> stub;
    // steady_clock nanoseconds of the last load report; written by the load stream's callback.
    std::atomic<int64_t> last_report_ns{0};
    // The last load report's simulation account (mock workers; both 0 otherwise).
    std::atomic<double> sim_expected_seconds{0};
    std::atomic<double> sim_actual_seconds{0};
    // Guarded by WorkerPool::mu_.
    bool connected = false;
    bool warned_unreachable = false;  // Logged once per outage, not per probe.
    bool refused = false;             // Differs from the cluster (logged once).
    v1::WorkerInfo info;
    std::shared_ptr<LoadStream> load;
  };

  WorkerPool(const WorkerPoolOptions& options, std::unique_ptr<router::SelectionPolicy> policy);
  void MonitorLoop();
  void Probe(size_t index);
  // Takes silent workers out and ends requests past their progress deadline.
  void CheckLiveness();
  void SetUp(WorkerId id, bool up);

  const WorkerPoolOptions options_;
  router::WorkerSet workers_;
  std::unique_ptr<router::SelectionPolicy> policy_;  // Used only under WorkerSet's lock.
  std::vector<std::unique_ptr<Worker>> entries_;     // index == WorkerId; fixed after Create.

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // Guarded by mu_.
  struct ClusterIdentity {
    std::string model_identity;
    int block_size = 0;
  };
  std::optional<ClusterIdentity> cluster_;  // Guarded by mu_.
  std::atomic<int> refused_{0};
  // Requests in flight by ticket. Guarded by mu_.
  std::unordered_map<const InFlight*, std::shared_ptr<InFlight>> in_flight_;
  std::mutex up_mu_;             // Orders on_up_changed calls.
  size_t last_up_reported_ = 0;  // Guarded by up_mu_.
  std::thread monitor_;
};

}  // namespace tandem::frontend
