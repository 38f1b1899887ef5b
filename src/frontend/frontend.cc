#include "frontend/frontend.h"

#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <future>

#include "common/lifecycle.h"
#include "common/logging.h"

namespace tandem::frontend {

namespace {

// Connections the open-file limit leaves room for, keeping some descriptors for gRPC, the
// workers' channels and logs.
int ConnectionsForFileLimit(uint64_t limit) {
  const uint64_t reserve = std::min<uint64_t>(256, limit / 2);
  return static_cast<int>(std::clamp<uint64_t>(limit - reserve, 1, 1 << 16));
}

}  // namespace

StatusOr<std::unique_ptr<Frontend>> Frontend::Create(const FrontendOptions& options) {
  if (options.http_threads < 1) return InvalidArgumentError("--http-threads must be at least 1");
  if (options.drain_timeout_s < 0) return InvalidArgumentError("--drain-timeout must be >= 0");
  if (options.max_body_size < 1) return InvalidArgumentError("--max-body-size must be positive");
  if (options.max_connections < 0) {
    return InvalidArgumentError("--max-connections must be >= 0 (0: from the open-file limit)");
  }
  if (options.keep_alive_timeout_s < 1 || options.header_timeout_s < 1 ||
      options.body_timeout_s < 1) {
    return InvalidArgumentError(
        "--keep-alive-timeout, --header-timeout and --body-timeout must be at least 1 s");
  }
  if (options.worker_stall_timeout_s <= 0) {
    return InvalidArgumentError("--worker-stall-timeout must be positive");
  }
  if (options.request_progress_timeout_s < 0) {
    return InvalidArgumentError("--request-progress-timeout must be >= 0 (0: no deadline)");
  }
  std::unique_ptr<Frontend> f(new Frontend(options));
  auto model = ServedModel::Load(options.model_dir, options.served_model_name);
  if (!model.ok()) return model.status();
  f->model_ = std::move(model).value();
  f->metrics_ = std::make_unique<FrontendMetrics>();
  WorkerPoolOptions pool_options;
  if (!options.workers_file.empty() && !options.workers.empty()) {
    return InvalidArgumentError("give --workers or --workers-file, not both");
  }
  if (!options.workers_file.empty()) {
    pool_options.discovery = router::CreateFileDiscovery(options.workers_file);
  } else if (!options.workers.empty()) {
    pool_options.discovery = router::CreateStaticDiscovery(options.workers);
  }
  pool_options.router = options.router;
  pool_options.stall_timeout_ms = static_cast<int>(options.worker_stall_timeout_s * 1000);
  pool_options.progress_timeout_ms = static_cast<int>(options.request_progress_timeout_s * 1000);
  Frontend* raw = f.get();
  pool_options.on_up_changed = [raw](size_t up) { raw->UpdateHealth(up); };
  auto pool = WorkerPool::Create(std::move(pool_options));
  if (!pool.ok()) return pool.status();
  f->pool_ = std::move(pool).value();

  const GenerationContext context{f->pool_.get(), f->model_.get(), f->metrics_.get(),
                                  options.disaggregation};
  f->api_ = std::make_unique<OpenAiApi>(OpenAiApiOptions{options.api_key}, context);
  HttpServerOptions http_options;
  http_options.host = options.host;
  http_options.port = options.port;
  http_options.max_body_size = options.max_body_size;
  const uint64_t file_limit = RaiseOpenFileLimit();
  const int fitting = ConnectionsForFileLimit(file_limit);
  http_options.max_connections = options.max_connections > 0 ? options.max_connections : fitting;
  if (options.max_connections > fitting) {
    spdlog::warn(
        "max connections exceed what the open-file limit leaves room for max_connections={} "
        "open_file_limit={} fitting={}",
        options.max_connections, file_limit, fitting);
  }
  http_options.keep_alive_timeout_s = options.keep_alive_timeout_s;
  http_options.header_timeout_s = options.header_timeout_s;
  http_options.body_timeout_s = options.body_timeout_s;
  FrontendMetrics* metrics = f->metrics_.get();
  http_options.on_connections = [metrics](int open) { metrics->open_connections().Set(open); };
  http_options.on_refused = [metrics] { metrics->refused_connections().Increment(); };
  auto http = HttpServer::Create(f->io_, http_options, *f->api_);
  if (!http.ok()) return http.status();
  f->http_ = std::move(http).value();
  spdlog::info(
      "http limits max_connections={} open_file_limit={} keep_alive_s={} header_s={} "
      "body_s={}",
      http_options.max_connections, file_limit, http_options.keep_alive_timeout_s,
      http_options.header_timeout_s, http_options.body_timeout_s);

  f->inference_ = std::make_unique<InferenceService>(context, f->io_, options.api_key);
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
  {
    // Not serving until Run starts; the pool's reports from now on set it.
    std::lock_guard lock(f->health_mu_);
    f->health_ready_ = true;
  }
  f->UpdateHealth(f->pool_->num_serving_up());
  if (!options.port_file.empty()) {
    Status s = f->WritePortFile();
    if (!s.ok()) return s;
  }
  return f;
}

Frontend::~Frontend() {
  {
    // The pool reports workers going down while it stops; the server is gone by then.
    std::lock_guard lock(health_mu_);
    health_ready_ = false;
  }
  if (grpc_server_) grpc_server_->Shutdown(std::chrono::system_clock::now());
  io_.stop();
  for (auto& t : threads_) t.join();
}

void Frontend::UpdateHealth(size_t workers_up) {
  std::lock_guard lock(health_mu_);
  if (!health_ready_) return;
  const bool serving = workers_up > 0 && running_ && !draining_;
  grpc::HealthCheckServiceInterface* health = grpc_server_->GetHealthCheckService();
  health->SetServingStatus("", serving);
  health->SetServingStatus(v1::Inference::service_full_name(), serving);
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
  running_ = true;
  UpdateHealth(pool_->num_serving_up());
  spdlog::info("frontend ready model={} http={}:{} grpc_port={} workers={} router={}",
               Quoted(model_->name()), options_.host, http_->port(), grpc_port_,
               pool_->num_workers(), router::RouterModeName(options_.router.mode));
  NotifyReady("serving");

  const int sig = signalled.get_future().get();
  using Clock = std::chrono::steady_clock;
  const auto drain = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options_.drain_timeout_s));
  const auto deadline = Clock::now() + drain;
  spdlog::info("frontend draining signal={} requests_in_flight={} timeout_s={}", strsignal(sig),
               pool_->in_flight(), options_.drain_timeout_s);
  NotifyStopping();
  draining_ = true;
  UpdateHealth(pool_->num_serving_up());
  api_->StopAdmitting();
  inference_->StopAdmitting();
  http_->StartDraining();
  auto idle = [this] { return pool_->in_flight() == 0 && http_->busy() == 0; };
  while (!idle() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  int cut = 0;
  if (pool_->in_flight() > 0) {
    // Every stream still open ends with an error event and [DONE] (gRPC: UNAVAILABLE), so no
    // client is left with a response cut without a word.
    cut = pool_->FailAll(UnavailableError(
        "the server is shutting down: the request did not finish within the drain deadline "
        "of " +
        fmt::format("{:g}", options_.drain_timeout_s) + " s"));
    spdlog::warn("drain deadline passed, ending requests requests={}", cut);
    const auto grace = Clock::now() + std::chrono::seconds(5);
    while (!idle() && Clock::now() < grace) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  // gRPC calls have ended (or were cut above); what is left is cancelled now.
  grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  work.reset();
  io_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  if (cut > 0) {
    return DeadlineExceededError(std::to_string(cut) + " requests were cut at the drain deadline");
  }
  if (!idle()) {
    return DeadlineExceededError("responses were still being written at the drain deadline");
  }
  spdlog::info("frontend stopped");
  return OkStatus();
}

}  // namespace tandem::frontend
