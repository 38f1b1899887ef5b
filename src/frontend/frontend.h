// Frontend: tandem-frontend assembled: the served model (tokenizer, chat template), the worker
// pool and router, the OpenAI HTTP server, the gRPC Inference and Health services, metrics, and
// the lifecycle: sd_notify READY once listening; on SIGTERM/SIGINT stop accepting, let requests
// in flight finish within the drain deadline, end the rest with an error (an SSE error event and
// [DONE], a gRPC UNAVAILABLE status), sd_notify STOPPING, return.
//
// gRPC health reports the overall server ("") and "tandem.v1.Inference" alike, and agrees with
// GET /health: SERVING while a worker is up and the server admits requests.
//
// Thread safety: Create and Run are called from the main thread; Run blocks until drained.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <utility>  // Before Asio: Boost 1.74's awaitable.hpp needs std::exchange.

#include <boost/asio.hpp>
#include <grpcpp/grpcpp.h>

#include "frontend/http_server.h"
#include "frontend/inference_service.h"
#include "frontend/metrics.h"
#include "frontend/openai_api.h"
#include "frontend/served_model.h"
#include "frontend/worker_pool.h"
#include "tandem/status.h"

namespace tandem::frontend {

struct FrontendOptions {
  std::string host = "127.0.0.1";  // HTTP and gRPC bind address.
  uint16_t port = 8000;            // HTTP port; 0 = ephemeral.
  uint16_t grpc_port = 8001;       // gRPC Inference port; 0 = ephemeral.
  std::string port_file;  // When set, receives {"http_port", "grpc_port", "metrics_port"}.
  std::vector<std::string> workers;  // Worker gRPC endpoints (static discovery).
  // A file listing the workers, followed as it changes (instead of `workers`).
  std::string workers_file;
  std::string model_dir;             // Tokenizer, chat template, generation_config.json.
  std::string served_model_name;     // Empty: the model directory's base name.
  // Bearer key required on /v1 and on every tandem.v1.Inference call when set.
  std::optional<std::string> api_key;
  // Mode, cost weights and temperature (router/router.h); the block size comes from the workers.
  router::RouterOptions router;
  uint64_t max_body_size = 1 << 20;  // Larger request bodies get 413.
  double drain_timeout_s = 30;       // How long SIGTERM waits for requests in flight.
  int http_threads = 2;              // Asio threads serving HTTP and request strands.
  int max_connections = 0;           // Open HTTP connections at most; 0: from the open-file limit.
  int keep_alive_timeout_s = 30;     // An HTTP connection idle this long between requests closes.
  int header_timeout_s = 10;         // Time a client has to send a request header.
  int body_timeout_s = 60;           // Time a client has to send a request body.
  double worker_stall_timeout_s = 3;  // A worker silent this long leaves routing and health.
  // A request with no message from its worker this long fails; 0: never.
  double request_progress_timeout_s = 120;
  // When a prompt is prefilled by a prefill worker rather than the worker that decodes it.
  DisaggregationOptions disaggregation;
};

class Frontend {
 public:
  static StatusOr<std::unique_ptr<Frontend>> Create(const FrontendOptions& options);
  ~Frontend();

  // Serves until SIGTERM/SIGINT, then drains. OK when every request finished in time;
  // DEADLINE_EXCEEDED when some had to be cut at the drain deadline.
  Status Run();

  uint16_t http_port() const { return http_->port(); }
  int grpc_port() const { return grpc_port_; }

 private:
  explicit Frontend(const FrontendOptions& options) : options_(options) {}
  Status WritePortFile() const;
  // Sets both health entries ("" and tandem.v1.Inference) from the workers up and draining.
  void UpdateHealth(size_t workers_up);

  const FrontendOptions options_;
  std::unique_ptr<ServedModel> model_;
  std::unique_ptr<FrontendMetrics> metrics_;
  std::unique_ptr<WorkerPool> pool_;
  boost::asio::io_context io_;
  std::unique_ptr<OpenAiApi> api_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<InferenceService> inference_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int grpc_port_ = 0;
  std::mutex health_mu_;       // Orders health updates from the pool and from Run.
  bool health_ready_ = false;  // Guarded by health_mu_: the gRPC server is built.
  std::atomic<bool> running_{false};
  std::atomic<bool> draining_{false};
  std::vector<std::thread> threads_;
};

}  // namespace tandem::frontend
