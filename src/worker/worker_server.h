// A worker daemon's serving side, assembled: the engine, the tandem.v1.Worker service, the
// standard grpc.health.v1.Health service and the Prometheus endpoint, with the drain sequence
// of ARCHITECTURE §4 (NOT_SERVING, refuse new requests, let open ones finish within a deadline,
// cancel the rest, shut down).
//
// Thread safety: Drain is called once, from one thread; the accessors are thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "common/metrics.h"
#include "tandem/engine.h"
#include "worker/worker_metrics.h"
#include "worker/worker_service.h"

namespace tandem::worker {

struct WorkerServerOptions {
  std::string host = "127.0.0.1";  // Address both listeners bind; loopback by default.
  int port = 0;                    // gRPC port; 0 picks a free one (see grpc_port()).
  int metrics_port = 0;            // Prometheus port; 0 picks a free one (see metrics_port()).
  WorkerServiceOptions service;
};

class WorkerServer {
 public:
  // Takes the engine, binds both listeners and starts serving (health SERVING).
  static StatusOr<std::unique_ptr<WorkerServer>> Create(std::unique_ptr<Engine> engine,
                                                        const WorkerServerOptions& options);
  // Shuts the server down at once if Drain did not.
  ~WorkerServer();
  WorkerServer(const WorkerServer&) = delete;
  WorkerServer& operator=(const WorkerServer&) = delete;

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_server_->port(); }

  // Health NOT_SERVING, new Generate calls UNAVAILABLE, open ones finish until `timeout`, the
  // rest are cancelled (their streams end with finished = true), then the server shuts down.
  void Drain(std::chrono::milliseconds timeout);

 private:
  WorkerServer() = default;

  // Declared in dependency order; destroyed in reverse (server first, engine last).
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<WorkerMetrics> metrics_;
  std::unique_ptr<WorkerService> service_;
  std::unique_ptr<grpc::Server> server_;
  int grpc_port_ = 0;
  bool shut_down_ = false;
};

}  // namespace tandem::worker
