// WorkerPool: the frontend's connections to its workers (a static list of gRPC endpoints). A
// monitor thread asks each worker that is down for its WorkerInfo (GetInfo, with a deadline)
// and, once it answers, follows its load reports (StreamLoad) into the router's WorkerSet; when
// that stream ends the worker is down again until it answers anew. Requests are routed with the
// configured selection policy among the workers that are up.
//
// Thread safety: every public method may be called from any thread. The monitor thread is the
// only one that ever blocks (on GetInfo), never an Asio or gRPC callback thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
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
  // How often the monitor retries a worker that is down.
  int probe_interval_ms = 200;
  // Deadline of one GetInfo probe.
  int probe_timeout_ms = 1000;
  // Load report interval asked of the workers.
  int load_interval_ms = 100;
};

// A worker chosen for one request; give it back with WorkerPool::Release exactly once.
struct WorkerLease {
  WorkerId id;
  v1::Worker::Stub* stub = nullptr;  // Owned by the pool; valid while the pool lives.
  v1::WorkerInfo info;
  std::string address;
};

class WorkerPool {
 public:
  static StatusOr<std::unique_ptr<WorkerPool>> Create(const WorkerPoolOptions& options);
  ~WorkerPool();  // Stops the monitor and cancels the load streams.
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Picks a worker that is up; nullopt when none is.
  std::optional<WorkerLease> Acquire();
  void Release(WorkerId id);
  // A call to the worker failed as unreachable: take it out of rotation until it answers again.
  void MarkDown(WorkerId id);

  size_t num_up() const { return workers_.num_up(); }
  // The WorkerInfo of some worker that is up (they all serve the same model).
  std::optional<v1::WorkerInfo> AnyInfo() const;

 private:
  struct Worker {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::Worker::Stub> stub;
    // Guarded by WorkerPool::mu_.
    bool connected = false;
    v1::WorkerInfo info;
    std::shared_ptr<LoadStream> load;
  };

  WorkerPool(const WorkerPoolOptions& options, std::unique_ptr<router::SelectionPolicy> policy);
  void MonitorLoop();
  void Probe(size_t index);

  const WorkerPoolOptions options_;
  router::WorkerSet workers_;
  std::unique_ptr<router::SelectionPolicy> policy_;  // Used only under WorkerSet's lock.
  std::vector<std::unique_ptr<Worker>> entries_;     // index == WorkerId; fixed after Create.

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // Guarded by mu_.
  std::thread monitor_;
};

}  // namespace tandem::frontend
