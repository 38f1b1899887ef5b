// WorkerPool: the frontend's side of its workers. Workers come from a Discovery (a static list,
// a watched file; etcd later) and may be added and removed while serving; the router
// (router/router.h) keeps their registry, load and KV index. A monitor thread asks each worker
// that is down for its WorkerInfo (GetInfo, with a deadline) and, once it answers and agrees with
// the cluster, follows its load reports (StreamLoad) and its KV events (SubscribeKvEvents) into
// the router; when the load stream ends the worker is down again until it answers anew.
//
// Cluster identity: the first worker to answer fixes the model identity and block size; a worker
// that differs in either, or whose block hash seed does not follow from its identity, is refused
// (one error line, refused_workers()) and probed again in case it is restarted right.
//
// KV events: a batch is applied to the router as it arrives. A gap in the ids, a malformed event
// or snapshot, or the stream ending while the worker is up makes the pool resubscribe from the
// last event applied + 1 (the worker answers with a snapshot when that id is gone); the first
// failure per connection is logged, each one counted (kv_resubscriptions()).
//
// The pool also watches the requests in flight. Each Route registers one with a callback that
// ends it; the monitor calls it when
//   - its worker has gone quiet: no load report for `stall_timeout_ms` (a stopped or wedged
//     process keeps its connections open, so nothing else would tell). The worker leaves routing
//     and health at once and comes back when it answers a probe again;
//   - the request itself has had no message from its worker for `progress_timeout_ms`;
//   - the frontend stops waiting for it (FailAll, at the drain deadline).
// A worker removed by discovery takes no new request; those it has finish.
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
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "frontend/worker_client.h"
#include "router/discovery.h"
#include "router/router.h"
#include "tandem/status.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::frontend {

struct WorkerPoolOptions {
  // Where the workers come from; required.
  std::unique_ptr<router::Discovery> discovery;
  router::RouterOptions router;
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
  // Runs whenever the number of workers up that can take a request (num_serving_up: prefill
  // workers alone cannot) changes, with the new number.
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

// A route slot (ARCHITECTURE §1 "Words"): the worker chosen for one request, with the routing
// plan that holds its share of the worker's predicted load. Give it back with
// WorkerPool::Release (dropping it releases the plan too). Move-only.
struct RouteSlot {
  WorkerId id;
  std::shared_ptr<v1::Worker::Stub> stub;  // Valid as long as the slot, even if the worker leaves.
  std::string address;
  std::shared_ptr<InFlight> in_flight;
  router::RoutePlan plan;
};

class WorkerPool final : private router::DiscoveryListener {
 public:
  static StatusOr<std::unique_ptr<WorkerPool>> Create(WorkerPoolOptions options);
  ~WorkerPool() override;  // Stops discovery and the monitor, cancels the streams.
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Routes a request (router/router.h) to a worker that is up and registers it (see the header
  // comment); nullopt when no worker is up.
  std::optional<RouteSlot> Route(const router::RouteRequest& request, const std::string& request_id,
                                 std::function<void(const Status&)> on_lost);
  void Release(RouteSlot& slot);
  // A call to the worker failed as unreachable: take it out of rotation until it answers again.
  void MarkDown(WorkerId id);
  // Ends every request in flight with `status` (through its on_lost); returns how many.
  int FailAll(const Status& status);

  size_t num_up() const { return router_->num_up(); }
  size_t num_prefill_up() const { return router_->num_prefill_up(); }
  // Workers up that can take a request whole (aggregated and decode workers): what health means.
  size_t num_serving_up() const;
  size_t num_workers() const { return router_->num_workers(); }
  // Requests routed and not yet released.
  int in_flight() const;
  // The WorkerInfo of a worker that is up (they agree on model identity and block size).
  std::optional<v1::WorkerInfo> ClusterInfo() const;
  const router::Router& router() const { return *router_; }

  // Simulated (mock) workers' time accounts, summed over the workers as last reported.
  struct SimulationTotals {
    double expected_seconds = 0;
    double actual_seconds = 0;
  };
  // nullopt when no worker has reported one (real backends).
  std::optional<SimulationTotals> simulation_totals() const;
  // Workers kept out of routing because they differ from the cluster.
  int refused_workers() const { return refused_.load(std::memory_order_relaxed); }
  // KV event subscriptions started again after a gap, a malformed message or a broken stream.
  int64_t kv_resubscriptions() const { return resubscriptions_.load(std::memory_order_relaxed); }
  // Snapshots applied: a worker's KV index rebuilt whole (its first subscription, or one from
  // an id that had left its ring).
  int64_t kv_snapshots() const { return snapshots_.load(std::memory_order_relaxed); }

 private:
  struct Worker;
  struct KvSubscription;

  WorkerPool(WorkerPoolOptions options, std::unique_ptr<router::Router> router);
  void OnWorkerAdded(const router::WorkerEndpoint& endpoint) override;
  void OnWorkerRemoved(const std::string& name) override;
  void MonitorLoop();
  void Probe(const std::shared_ptr<Worker>& w);
  // Checks a worker's answer against the cluster's identity; false (logged once) to refuse it.
  bool Admit(Worker& w, const v1::WorkerInfo& info);  // With mu_ held.
  void StartLoadStream(const std::shared_ptr<Worker>& w);
  void Subscribe(const std::shared_ptr<Worker>& w);
  // Applies one message of a worker's KV event stream; not OK: resubscribe.
  Status ApplyKvBatch(WorkerId id, KvSubscription& sub, const v1::KvEventBatch& batch);
  // Takes silent workers out and ends requests past their progress deadline.
  void CheckLiveness();
  void SetUp(WorkerId id, bool up);
  void Wake();

  const WorkerPoolOptions options_;
  std::unique_ptr<router::Router> router_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // Guarded by mu_.
  bool wake_ = false;      // Guarded by mu_: the monitor has work now.
  // The workers discovery reported and has not removed, by id. Guarded by mu_.
  std::map<WorkerId, std::shared_ptr<Worker>> workers_;
  struct ClusterIdentity {
    std::string model_identity;
    int block_size = 0;
  };
  std::optional<ClusterIdentity> cluster_;  // Guarded by mu_.
  std::atomic<int> refused_{0};
  std::atomic<int64_t> resubscriptions_{0};
  std::atomic<int64_t> snapshots_{0};
  // Requests in flight by ticket. Guarded by mu_.
  std::unordered_map<const InFlight*, std::shared_ptr<InFlight>> in_flight_;
  std::mutex up_mu_;             // Orders on_up_changed calls.
  size_t last_up_reported_ = 0;  // Guarded by up_mu_.
  std::thread monitor_;
};

}  // namespace tandem::frontend
