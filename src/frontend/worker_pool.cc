#include "frontend/worker_pool.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <utility>

namespace tandem::frontend {

StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Create(const WorkerPoolOptions& options) {
  if (options.endpoints.empty()) return InvalidArgumentError("--workers: no worker given");
  auto policy = router::CreatePolicy(options.router_mode);
  if (!policy.ok()) return policy.status().WithContext("--router-mode");
  return std::unique_ptr<WorkerPool>(new WorkerPool(options, std::move(policy).value()));
}

WorkerPool::WorkerPool(const WorkerPoolOptions& options,
                       std::unique_ptr<router::SelectionPolicy> policy)
    : options_(options), policy_(std::move(policy)) {
  for (const std::string& address : options_.endpoints) {
    auto w = std::make_unique<Worker>();
    w->address = address;
    grpc::ChannelArguments args;
    // Notice a worker that comes (back) up within a probe or two, not gRPC's default minute.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    w->channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    w->stub = v1::Worker::NewStub(w->channel);
    workers_.Add(address);
    entries_.push_back(std::move(w));
  }
  monitor_ = std::thread([this] { MonitorLoop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  monitor_.join();
  std::vector<std::shared_ptr<LoadStream>> loads;
  {
    std::lock_guard lock(mu_);
    for (auto& w : entries_) {
      if (w->load) loads.push_back(std::move(w->load));
    }
  }
  for (auto& l : loads) l->Cancel();
  // The load streams' callbacks touch this pool: wait until each has finished.
  for (auto& l : loads) {
    while (l.use_count() > 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void WorkerPool::MonitorLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    for (size_t i = 0; i < entries_.size() && !stopping_; ++i) {
      if (entries_[i]->connected) continue;
      lock.unlock();
      Probe(i);
      lock.lock();
    }
    cv_.wait_for(lock, std::chrono::milliseconds(options_.probe_interval_ms),
                 [this] { return stopping_; });
  }
}

void WorkerPool::Probe(size_t index) {
  Worker& w = *entries_[index];
  const WorkerId id(index);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(options_.probe_timeout_ms));
  v1::GetInfoRequest request;
  v1::WorkerInfo info;
  const grpc::Status status = w.stub->GetInfo(&context, request, &info);
  if (!status.ok()) {
    spdlog::debug("worker probe failed worker={} error={}", w.address, status.error_message());
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    w.info = info;
    w.connected = true;
  }
  // Started outside mu_: its callbacks take mu_.
  std::shared_ptr<LoadStream> load = LoadStream::Start(
      *w.stub, options_.load_interval_ms,
      {.on_report =
           [this, id](const v1::LoadReport& r) {
             workers_.UpdateLoad(id, router::LoadReport{
                                         .active_requests = r.active_requests(),
                                         .waiting_requests = r.waiting_requests(),
                                         .active_blocks = r.active_blocks(),
                                         .free_blocks = r.free_blocks(),
                                         .queued_prefill_tokens = r.queued_prefill_tokens()});
           },
       .on_done =
           [this, index, id](const grpc::Status& s) {
             std::lock_guard lock(mu_);
             workers_.SetUp(id, false);
             Worker& dead = *entries_[index];
             dead.connected = false;
             dead.load.reset();
             if (!stopping_) {
               spdlog::warn("worker down worker={} error={}", dead.address, s.error_message());
             }
           }});
  {
    std::lock_guard lock(mu_);
    if (!w.connected) return;  // The stream already ended.
    w.load = std::move(load);
    workers_.SetUp(id, true);
  }
  spdlog::info("worker up worker={} model={} max_model_len={} block_size={}", w.address,
               info.model(), info.max_model_len(), info.block_size());
}

std::optional<WorkerLease> WorkerPool::Acquire() {
  const std::optional<WorkerId> id = workers_.SelectWorker(*policy_);
  if (!id) return std::nullopt;
  Worker& w = *entries_[id->value()];
  WorkerLease lease;
  lease.id = *id;
  lease.stub = w.stub.get();
  lease.address = w.address;
  std::lock_guard lock(mu_);
  lease.info = w.info;
  return lease;
}

void WorkerPool::Release(WorkerId id) { workers_.Release(id); }

void WorkerPool::MarkDown(WorkerId id) {
  std::shared_ptr<LoadStream> load;
  {
    std::lock_guard lock(mu_);
    if (id.value() >= entries_.size()) return;
    load = entries_[id.value()]->load;
  }
  workers_.SetUp(id, false);
  // Ending the load stream makes the monitor probe the worker again.
  if (load) load->Cancel();
}

std::optional<v1::WorkerInfo> WorkerPool::AnyInfo() const {
  std::lock_guard lock(mu_);
  for (const auto& w : entries_) {
    if (w->connected) return w->info;
  }
  return std::nullopt;
}

}  // namespace tandem::frontend
