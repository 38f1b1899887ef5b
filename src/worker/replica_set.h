// Several workers in one process (`--replicas N`): each replica is a whole worker — its own
// engine (engine thread, block pool, KV event log), gRPC service on its own port, health and
// metrics endpoint — sharing only the process. The mock backend uses it to run hundreds of
// workers on a small machine without hundreds of processes.
//
// Thread safety: Drain is called once, from one thread; the accessors are thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tandem/engine.h"
#include "worker/worker_server.h"

namespace tandem::worker {

// Ports of N replicas from a flag's text: one port P (replica i listens on P + i; 0: every
// replica on a free port) or a comma-separated list of exactly N ports.
StatusOr<std::vector<int>> ParseReplicaPorts(const std::string& text, int replicas,
                                             const std::string& flag);

struct ReplicaSetOptions {
  int replicas = 1;
  std::vector<int> ports;          // gRPC port of each replica (0: a free one).
  std::vector<int> metrics_ports;  // Prometheus port of each replica (0: a free one).
  // Options every replica shares; port, metrics_port and service.worker_id are set per replica
  // (the worker id gets "/i" appended when there are several).
  WorkerServerOptions server;
};

class ReplicaSet {
 public:
  // Builds replica i's engine with make_engine(i) and starts its server, in order; a failure
  // stops those already started.
  static StatusOr<std::unique_ptr<ReplicaSet>> Create(
      const ReplicaSetOptions& options,
      const std::function<StatusOr<std::unique_ptr<Engine>>(int)>& make_engine);
  ReplicaSet(const ReplicaSet&) = delete;
  ReplicaSet& operator=(const ReplicaSet&) = delete;

  int size() const { return static_cast<int>(servers_.size()); }
  const WorkerServer& replica(int i) const { return *servers_[i]; }
  // The port file's JSON: the first replica's "grpc_port" and "metrics_port" (what a one-worker
  // process has always written), and "replicas": [{"grpc_port", "metrics_port"}, ...].
  std::string PortsJson() const;
  // Drains every replica at once (WorkerServer::Drain), so the whole takes one deadline.
  void Drain(std::chrono::milliseconds timeout);

 private:
  ReplicaSet() = default;
  std::vector<std::unique_ptr<WorkerServer>> servers_;
};

}  // namespace tandem::worker
