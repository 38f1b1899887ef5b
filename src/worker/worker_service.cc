#include "worker/worker_service.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "common/logging.h"
#include "common/status_macros.h"
#include "tandem/block_hash.h"
#include "transfer/kv_puller.h"
#include "worker/generate_call.h"
#include "worker/grpc_status.h"
#include "worker/kv_proto.h"
#include "worker/lease_releaser.h"
#include "worker/load_stream.h"

namespace tandem::worker {
namespace {

// Answers a Generate call that never reaches the engine. Finish in the constructor is allowed:
// gRPC keeps it in the reactor's backlog until the call is bound.
class RejectReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  explicit RejectReactor(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

GenerateRequest RequestFromProto(const v1::GenerateRequest& in) {
  GenerateRequest out;
  out.prompt_tokens.assign(in.prompt_tokens().begin(), in.prompt_tokens().end());
  out.cache_salt = in.cache_salt();
  out.prefill_only = in.prefill_only();
  if (in.has_kv_source()) out.kv_source = FromProto(in.kv_source());
  const v1::SamplingParams& p = in.sampling();
  SamplingParams& s = out.sampling;
  if (p.has_temperature()) s.temperature = p.temperature();
  if (p.has_top_p()) s.top_p = p.top_p();
  if (p.has_top_k()) s.top_k = p.top_k();
  if (p.has_min_p()) s.min_p = p.min_p();
  if (p.has_repetition_penalty()) s.repetition_penalty = p.repetition_penalty();
  if (p.has_presence_penalty()) s.presence_penalty = p.presence_penalty();
  if (p.has_frequency_penalty()) s.frequency_penalty = p.frequency_penalty();
  if (p.has_seed()) s.seed = p.seed();
  if (p.has_max_tokens()) s.max_tokens = p.max_tokens();
  s.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  s.ignore_eos = p.ignore_eos();
  s.logprobs = p.logprobs();
  s.top_logprobs = p.top_logprobs();
  return out;
}

}  // namespace

// Refreshes the gauges from engine stats on a dispatcher timer, off the token path.
class WorkerService::StatsTask final : public Pumped,
                                       public std::enable_shared_from_this<StatsTask> {
 public:
  StatsTask(WorkerService* service, Dispatcher* dispatcher)
      : service_(service), dispatcher_(dispatcher) {}
  void Pump() override {}
  void OnTimer() override {
    service_->metrics_->Update(service_->engine_->stats(), service_->active_requests());
    dispatcher_->WakeAt(std::chrono::steady_clock::now() + service_->options_.stats_interval,
                        weak_from_this());
  }

 private:
  WorkerService* const service_;
  Dispatcher* const dispatcher_;
};

WorkerService::WorkerService(Engine* engine, WorkerMetrics* metrics, WorkerServiceOptions options)
    : engine_(engine), metrics_(metrics), options_(std::move(options)) {
  stats_task_ = std::make_shared<StatsTask>(this, &dispatcher_);
  dispatcher_.WakeAt(std::chrono::steady_clock::now(), stats_task_);
  KvEventSource& events = engine_->kv_events();
  kv_streams_ = std::make_shared<KvEventStreams>(&events, &dispatcher_, metrics_);
  kv_listener_ = KvEventListener(&events, [streams = kv_streams_.get()] { streams->OnAppended(); });
}

WorkerService::~WorkerService() = default;

grpc::ServerWriteReactor<v1::GenerateResponse>* WorkerService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  const auto arrival = std::chrono::steady_clock::now();
  const std::string& request_id = request->request_id();
  RequestId engine_id;
  std::shared_ptr<OutputStream> stream;
  {
    // Submit only validates and enqueues, so holding the lock across it is cheap; it makes the
    // duplicate-id check and the registration one step, and orders them against StartDrain.
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) {
      metrics_->CountRequest(CallOutcome::kUnavailable);
      return new RejectReactor(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "the worker is draining"));
    }
    if (!request_id.empty() && by_request_id_.contains(request_id)) {
      metrics_->CountRequest(CallOutcome::kInvalid);
      return new RejectReactor(grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                                            "request_id " + request_id + " is already running"));
    }
    auto submitted = engine_->Submit(RequestFromProto(*request));
    if (!submitted.ok()) {
      spdlog::debug("request rejected request_id={} error={}", request_id,
                    Quoted(submitted.status().ToString()));
      metrics_->CountRequest(submitted.status().code() == StatusCode::kUnavailable
                                 ? CallOutcome::kUnavailable
                                 : CallOutcome::kInvalid);
      return new RejectReactor(ToGrpcStatus(submitted.status()));
    }
    engine_id = submitted->first;
    stream = std::move(submitted->second);
    open_.emplace(engine_id, request_id);
    if (!request_id.empty()) by_request_id_.emplace(request_id, engine_id);
  }
  GenerateCall::Deps deps{engine_, metrics_, &dispatcher_,
                          kv_registration_ ? &kv_registration_->descriptor() : nullptr};
  GenerateCall::Hooks hooks;
  hooks.on_finished = [this, engine_id, request_id] { OnGenerateFinished(engine_id, request_id); };
  hooks.on_done = [this, engine_id] { OnGenerateDone(engine_id); };
  return GenerateCall::Start(deps, request_id, engine_id, std::move(stream), arrival,
                             std::move(hooks));
}

void WorkerService::OnGenerateFinished(RequestId engine_id, const std::string& request_id) {
  // Before the client can see the end, so a Cancel sent after it finds nothing.
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_request_id_.find(request_id);
  if (it != by_request_id_.end() && it->second == engine_id) by_request_id_.erase(it);
}

void WorkerService::OnGenerateDone(RequestId engine_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    open_.erase(engine_id);
  }
  idle_cv_.notify_all();
}

grpc::ServerUnaryReactor* WorkerService::Cancel(grpc::CallbackServerContext* context,
                                                const v1::CancelRequest* request,
                                                v1::CancelResponse* response) {
  std::optional<RequestId> engine_id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_request_id_.find(request->request_id());
    if (it != by_request_id_.end()) engine_id = it->second;
  }
  // The call's stream ends with FINISH_REASON_CANCELLED once the engine has dropped it.
  if (engine_id) engine_->Cancel(*engine_id);
  response->set_found(engine_id.has_value());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

Status WorkerService::RegisterKvMemory() {
  TANDEM_RETURN_IF_ERROR(RegisterPool());
  if (options_.role == v1::WORKER_ROLE_PREFILL) return OkStatus();
  // Released leases hold the prefill workers' blocks no longer than the pull needs.
  auto releaser = std::make_shared<LeaseReleaser>();
  engine_->SetKvPuller(transfer::CreateKvPuller(
      {.backend = kv_registration_ ? options_.transfer : nullptr,
       .local = kv_registration_.get(),
       .block_bytes = engine_->kv_layout().BlockBytes(),
       .timeout = options_.pull_timeout,
       // Only a pool without memory (the mock's) may have its pulls simulated: a real one would
       // decode from blocks nothing was written into.
       .simulated_bytes_per_second =
           engine_->kv_memory() ? 0.0 : options_.simulated_transfer_bytes_per_second,
       .simulated_speedup = options_.simulated_speedup,
       .release = [releaser](const KvSource& source, std::vector<int32_t> blocks,
                             std::function<void(const Status&)> done) {
         releaser->Release(source, std::move(blocks), std::move(done));
       }}));
  return OkStatus();
}

Status WorkerService::RegisterPool() {
  if (options_.transfer == nullptr) return OkStatus();
  const std::optional<KvMemory> memory = engine_->kv_memory();
  if (!memory) return OkStatus();  // A simulated pool (mock): nothing to read.
  transfer::MemoryRegion region{
      .base = memory->base,
      .bytes = memory->bytes,
      .kind = memory->device ? transfer::MemoryKind::kDevice : transfer::MemoryKind::kHost,
      .device = memory->device_index};
  auto registration = options_.transfer->Register(region);
  if (!registration.ok()) return registration.status().WithContext("--transfer");
  kv_registration_ = std::move(registration).value();
  spdlog::info("kv pool registered transfer={} bytes={} device={}", options_.transfer->name(),
               memory->bytes, memory->device);
  return OkStatus();
}

grpc::ServerUnaryReactor* WorkerService::ReleaseKv(grpc::CallbackServerContext* context,
                                                   const v1::ReleaseKvRequest* request,
                                                   v1::ReleaseKvResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Applied on the engine thread, which answers (quickly: it only finishes the call).
  std::vector<int32_t> blocks(request->block_ids().begin(), request->block_ids().end());
  engine_->ReleaseKv(request->lease_id(), std::move(blocks), [reactor, response](const Status& s) {
    response->set_released(s.ok());
    const bool answered =
        s.ok() || s.code() == StatusCode::kNotFound || s.code() == StatusCode::kInvalidArgument;
    reactor->Finish(answered ? grpc::Status::OK : ToGrpcStatus(s));
  });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::GetInfo(grpc::CallbackServerContext* context,
                                                 const v1::GetInfoRequest* request,
                                                 v1::WorkerInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  {
    // A frontend that probes a draining worker keeps it out of routing.
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the worker is draining"));
      return reactor;
    }
  }
  const KvLayout& layout = engine_->kv_layout();
  response->set_worker_id(options_.worker_id);
  response->set_role(options_.role);
  response->set_model(options_.model);
  response->set_block_size(layout.block_size);
  response->set_vocab_size(engine_->vocab_size());
  response->set_max_model_len(engine_->max_model_len());
  response->set_total_blocks(engine_->stats().blocks_total);
  response->set_model_identity(engine_->model_identity());
  response->set_block_hash_seed(BlockHashSeed(engine_->model_identity()));
  ToProto(layout, response->mutable_kv_layout());
  if (kv_registration_) {
    response->set_transfer_backend(kv_registration_->descriptor().backend);
    response->set_transfer_descriptor(kv_registration_->descriptor().bytes);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<v1::LoadReport>* WorkerService::StreamLoad(
    grpc::CallbackServerContext* context, const v1::StreamLoadRequest* request) {
  // ARCHITECTURE §3: at least every 100 ms, whatever was asked.
  constexpr int kMaxIntervalMs = 100;
  constexpr int kMinIntervalMs = 1;
  int interval_ms = request->interval_ms();
  if (interval_ms <= 0 || interval_ms > kMaxIntervalMs) interval_ms = kMaxIntervalMs;
  interval_ms = std::max(interval_ms, kMinIntervalMs);
  return LoadStream::Start(
      &dispatcher_, [this] { return LoadSnapshot(); }, std::chrono::milliseconds(interval_ms));
}

grpc::ServerWriteReactor<v1::KvEventBatch>* WorkerService::SubscribeKvEvents(
    grpc::CallbackServerContext* context, const v1::SubscribeKvEventsRequest* request) {
  return kv_streams_->Subscribe(request->from_event_id());
}

void WorkerService::StartDrain() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
}

bool WorkerService::WaitIdle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_until(lock, deadline, [&] { return open_.empty(); });
}

int WorkerService::CancelAll() {
  std::vector<RequestId> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, name] : open_) ids.push_back(id);
  }
  for (RequestId id : ids) engine_->Cancel(id);
  return static_cast<int>(ids.size());
}

int WorkerService::active_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(open_.size());
}

v1::LoadReport WorkerService::LoadSnapshot() const {
  const EngineStats stats = engine_->stats();
  v1::LoadReport report;
  report.set_active_requests(active_requests());
  report.set_active_blocks(stats.blocks_total - stats.blocks_available);
  report.set_free_blocks(stats.blocks_available);
  report.set_queued_prefill_tokens(stats.queued_prefill_tokens);
  report.set_waiting_requests(stats.waiting);
  if (stats.simulation) {
    report.set_sim_expected_seconds(stats.simulation->expected_seconds);
    report.set_sim_actual_seconds(stats.simulation->actual_seconds);
  }
  report.set_kv_events_last_id(engine_->kv_events().last_id());
  return report;
}

}  // namespace tandem::worker
