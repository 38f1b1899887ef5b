#include "frontend/frontend.h"

#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <future>

#include "common/lifecycle.h"

namespace tandem::frontend {

StatusOr<std::unique_ptr<Frontend>> Frontend::Create(const FrontendOptions& options) {
  if (options.http_threads < 1) return InvalidArgumentError("--http-threads must be at least 1");
  if (options.drain_timeout_s < 0) return InvalidArgumentError("--drain-timeout-s must be >= 0");
  if (options.max_body_size < 1) return InvalidArgumentError("--max-body-size must be positive");
  std::unique_ptr<Frontend> f(new Frontend(options));
  auto model = ServedModel::Load(options.model_dir, options.served_model_name);
  if (!model.ok()) return model.status();
  f->model_ = std::move(model).value();
  f->metrics_ = std::make_unique<FrontendMetrics>();
  WorkerPoolOptions pool_options;
  pool_options.endpoints = options.workers;
  pool_options.router_mode = options.router_mode;
  auto pool = WorkerPool::Create(pool_options);
  if (!pool.ok()) return pool.status();
  f->pool_ = std::move(pool).value();

  const GenerationContext context{f->pool_.get(), f->model_.get(), f->metrics_.get()};
  f->api_ = std::make_unique<OpenAiApi>(OpenAiApiOptions{options.api_key}, context);
  HttpServerOptions http_options;
  http_options.host = options.host;
  http_options.port = options.port;
  http_options.max_body_size = options.max_body_size;
  auto http = HttpServer::Create(f->io_, http_options, *f->api_);
  if (!http.ok()) return http.status();
  f->http_ = std::move(http).value();

  f->inference_ = std::make_unique<InferenceService>(context, f->io_);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  const std::string grpc_address = (options.host.find(':') != std::string::npos
                                        ? "[" + options.host + "]"
                                        : options.host) +
                                   ":" + std::to_string(options.grpc_port);
  builder.AddListeningPort(grpc_address, grpc::InsecureServerCredentials(), &f->grpc_port_);
  builder.RegisterService(f->inference_.get());
  f->grpc_server_ = builder.BuildAndStart();
  if (f->grpc_server_ == nullptr || f->grpc_port_ == 0) {
    return UnavailableError("cannot listen for gRPC on " + grpc_address);
  }
  if (!options.port_file.empty()) {
    Status s = f->WritePortFile();
    if (!s.ok()) return s;
  }
  return f;
}

Frontend::~Frontend() {
  if (grpc_server_) grpc_server_->Shutdown(std::chrono::system_clock::now());
  io_.stop();
  for (auto& t : threads_) t.join();
}

Status Frontend::WritePortFile() const {
  // Metrics are served on the HTTP port (GET /metrics); named like every daemon's.
  return tandem::WritePortFile(options_.port_file, {{"http_port", http_->port()},
                                                    {"grpc_port", grpc_port_},
                                                    {"metrics_port", http_->port()}});
}

Status Frontend::Run() {
  std::promise<int> signalled;
  boost::asio::signal_set signals(io_, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (!ec) signalled.set_value(sig);
  });
  auto work = boost::asio::make_work_guard(io_);
  for (int i = 0; i < options_.http_threads; ++i) threads_.emplace_back([this] { io_.run(); });
  grpc_server_->GetHealthCheckService()->SetServingStatus(true);
  spdlog::info("frontend ready model={} http={}:{} grpc_port={} workers={} router={}",
               model_->name(), options_.host, http_->port(), grpc_port_, options_.workers.size(),
               options_.router_mode);
  NotifyReady("serving");

  const int sig = signalled.get_future().get();
  spdlog::info("frontend draining signal={} timeout_s={}", sig, options_.drain_timeout_s);
  NotifyStopping();
  api_->StopAdmitting();
  inference_->StopAdmitting();
  http_->StartDraining();
  grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(options_.drain_timeout_s);
  auto in_flight = [this] {
    return http_->busy() + static_cast<int>(metrics_->active_requests().Value());
  };
  while (in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int left = in_flight();
  // gRPC streams still open get until the deadline too, then are cancelled.
  grpc_server_->Shutdown(std::chrono::system_clock::now() +
                         std::max(std::chrono::steady_clock::duration::zero(),
                                  deadline - std::chrono::steady_clock::now()));
  work.reset();
  io_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  if (left > 0) {
    return DeadlineExceededError("drain deadline passed with " + std::to_string(left) +
                                 " requests in flight");
  }
  spdlog::info("frontend stopped");
  return OkStatus();
}

}  // namespace tandem::frontend
