#include "worker/worker_server.h"

#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <utility>

#include "common/status_macros.h"

namespace tandem::worker {
namespace {

std::string HostPort(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace

StatusOr<std::unique_ptr<WorkerServer>> WorkerServer::Create(std::unique_ptr<Engine> engine,
                                                             const WorkerServerOptions& options) {
  if (engine == nullptr) return InvalidArgumentError("no engine");
  if (options.port < 0 || options.port > 65535) {
    return InvalidArgumentError("--port: " + std::to_string(options.port) + " is out of range");
  }
  auto server = std::unique_ptr<WorkerServer>(new WorkerServer());
  server->engine_ = std::move(engine);
  TANDEM_ASSIGN_OR_RETURN(server->metrics_server_,
                          MetricsServer::Create(options.host, options.metrics_port));
  server->metrics_ = std::make_unique<WorkerMetrics>(server->metrics_server_->registry());
  server->service_ = std::make_unique<WorkerService>(server->engine_.get(), server->metrics_.get(),
                                                     options.service);
  TANDEM_RETURN_IF_ERROR(server->service_->RegisterKvMemory());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  const std::string address = HostPort(options.host, options.port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &server->grpc_port_);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->grpc_port_ == 0) {
    server->shut_down_ = true;
    return UnavailableError("cannot listen for gRPC on " + address);
  }
  // The overall server and the Worker service alike (a client may ask for either).
  server->server_->GetHealthCheckService()->SetServingStatus("", true);
  server->server_->GetHealthCheckService()->SetServingStatus(v1::Worker::service_full_name(), true);
  return server;
}

WorkerServer::~WorkerServer() {
  if (server_ != nullptr && !shut_down_) {
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
  }
}

void WorkerServer::Drain(std::chrono::milliseconds timeout) {
  if (shut_down_) return;
  server_->GetHealthCheckService()->SetServingStatus(false);  // Every service it reported.
  service_->StartDrain();
  spdlog::info("draining open_requests={} timeout_s={:.1f}", service_->active_requests(),
               std::chrono::duration<double>(timeout).count());
  if (!service_->WaitIdle(std::chrono::steady_clock::now() + timeout)) {
    const int cancelled = service_->CancelAll();
    spdlog::warn("drain deadline passed, cancelling requests={}", cancelled);
    // Cancelled requests end at the engine's next step; a short grace lets their final messages
    // go out before the server cancels whatever is left.
    service_->WaitIdle(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  }
  // Only the open-ended streams (load reports, health watches) remain: cancel them now.
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  shut_down_ = true;
  spdlog::info("drained");
}

}  // namespace tandem::worker
