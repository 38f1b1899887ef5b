#include "frontend/worker_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/logging.h"

namespace tandem::frontend {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Seconds(int64_t ns) { return fmt::format("{:.1f}", static_cast<double>(ns) / 1e9); }

}  // namespace

void InFlight::Touch() { last_progress_ns.store(NowNs(), std::memory_order_relaxed); }

StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Create(const WorkerPoolOptions& options) {
  if (options.endpoints.empty()) return InvalidArgumentError("--workers: no worker given");
  if (options.stall_timeout_ms <= 0) {
    return InvalidArgumentError("--worker-stall-timeout must be positive");
  }
  if (options.progress_timeout_ms < 0) {
    return InvalidArgumentError("--request-progress-timeout must be >= 0");
  }
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
      // A probe of a stopped worker blocks until its deadline: check the others first.
      CheckLiveness();
      Probe(i);
      lock.lock();
    }
    lock.unlock();
    CheckLiveness();
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(options_.probe_interval_ms),
                 [this] { return stopping_; });
  }
}

void WorkerPool::SetUp(WorkerId id, bool up) {
  workers_.SetUp(id, up);
  if (!options_.on_up_changed) return;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
  }
  std::lock_guard lock(up_mu_);
  const size_t now_up = workers_.num_up();
  if (now_up == last_up_reported_) return;
  last_up_reported_ = now_up;
  options_.on_up_changed(now_up);
}

void WorkerPool::CheckLiveness() {
  const int64_t now = NowNs();
  const int64_t stall_ns = int64_t{options_.stall_timeout_ms} * 1000000;
  const int64_t progress_ns = int64_t{options_.progress_timeout_ms} * 1000000;
  std::vector<std::pair<std::shared_ptr<InFlight>, Status>> lost;
  std::vector<std::shared_ptr<LoadStream>> cancel;
  std::vector<WorkerId> stalled;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    for (size_t i = 0; i < entries_.size(); ++i) {
      Worker& w = *entries_[i];
      if (!w.connected || w.load == nullptr) continue;
      const int64_t silent = now - w.last_report_ns.load(std::memory_order_relaxed);
      if (silent < stall_ns) continue;
      stalled.push_back(WorkerId(i));
      cancel.push_back(w.load);  // Its on_done marks the worker disconnected; probes follow.
      const Status status =
          UnavailableError("worker " + w.address + " stopped responding (no load report for " +
                           Seconds(silent) + " s)");
      const size_t before = lost.size();
      for (const auto& [key, r] : in_flight_) {
        if (r->worker.value() == i) lost.emplace_back(r, status);
      }
      spdlog::warn("worker stopped responding worker={} silent_s={} in_flight={}", w.address,
                   Seconds(silent), lost.size() - before);
    }
    if (progress_ns > 0) {
      for (const auto& [key, r] : in_flight_) {
        const int64_t idle = now - r->last_progress_ns.load(std::memory_order_relaxed);
        if (idle < progress_ns || r->lost.load()) continue;
        if (std::find(stalled.begin(), stalled.end(), r->worker) != stalled.end()) continue;
        const std::string& address = entries_[r->worker.value()]->address;
        spdlog::warn("request made no progress request_id={} worker={} idle_s={}", r->request_id,
                     address, Seconds(idle));
        lost.emplace_back(r, DeadlineExceededError("no response from worker " + address + " for " +
                                                   Seconds(idle) + " s"));
      }
    }
  }
  for (WorkerId id : stalled) SetUp(id, false);
  for (auto& l : cancel) l->Cancel();
  for (auto& [r, status] : lost) {
    if (!r->lost.exchange(true) && r->on_lost) r->on_lost(status);
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
    bool warn = false;
    {
      std::lock_guard lock(mu_);
      warn = !w.warned_unreachable && !stopping_;
      w.warned_unreachable = true;
    }
    if (warn) {
      spdlog::warn("worker unreachable worker={} error={} retry_ms={}", w.address,
                   Quoted(status.error_message()), options_.probe_interval_ms);
    } else {
      spdlog::debug("worker probe failed worker={} error={}", w.address,
                    Quoted(status.error_message()));
    }
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    // The first worker to answer sets what the cluster computes; one that differs in model
    // identity or block size would share no cached block with the others and hash prompts
    // differently: it stays out of routing (probed again, in case it is restarted right).
    if (!cluster_) cluster_ = ClusterIdentity{info.model_identity(), info.block_size()};
    if (info.model_identity() != cluster_->model_identity ||
        info.block_size() != cluster_->block_size) {
      if (!w.refused) {
        w.refused = true;
        refused_.fetch_add(1, std::memory_order_relaxed);
        spdlog::error(
            "worker refused worker={} reason={} block_size={} cluster_block_size={} "
            "model_identity={} cluster_model_identity={}",
            w.address,
            Quoted(info.block_size() != cluster_->block_size ? "block size differs"
                                                             : "model identity differs"),
            info.block_size(), cluster_->block_size, Quoted(info.model_identity()),
            Quoted(cluster_->model_identity));
      }
      return;
    }
    if (w.refused) {
      w.refused = false;
      refused_.fetch_sub(1, std::memory_order_relaxed);
    }
    w.info = info;
    w.connected = true;
    w.warned_unreachable = false;
  }
  w.last_report_ns.store(NowNs(), std::memory_order_relaxed);
  // Started outside mu_: its callbacks take mu_.
  std::shared_ptr<LoadStream> load = LoadStream::Start(
      *w.stub, options_.load_interval_ms,
      {.on_report =
           [this, id, index](const v1::LoadReport& r) {
             Worker& from = *entries_[index];
             from.last_report_ns.store(NowNs(), std::memory_order_relaxed);
             from.sim_expected_seconds.store(r.sim_expected_seconds(), std::memory_order_relaxed);
             from.sim_actual_seconds.store(r.sim_actual_seconds(), std::memory_order_relaxed);
             workers_.UpdateLoad(id, router::LoadReport{
                                         .active_requests = r.active_requests(),
                                         .waiting_requests = r.waiting_requests(),
                                         .active_blocks = r.active_blocks(),
                                         .free_blocks = r.free_blocks(),
                                         .queued_prefill_tokens = r.queued_prefill_tokens()});
           },
       .on_done =
           [this, index, id](const grpc::Status& s) {
             bool log = false;
             {
               std::lock_guard lock(mu_);
               Worker& dead = *entries_[index];
               dead.connected = false;
               dead.load.reset();
               log = !stopping_;
             }
             SetUp(id, false);
             if (log) {
               spdlog::warn("worker down worker={} error={}", entries_[index]->address,
                            Quoted(s.error_message()));
             }
           }});
  {
    std::lock_guard lock(mu_);
    if (!w.connected) return;  // The stream already ended.
    w.load = std::move(load);
  }
  SetUp(id, true);
  spdlog::info("worker up worker={} model={} max_model_len={} block_size={}", w.address,
               Quoted(info.model()), info.max_model_len(), info.block_size());
}

std::optional<RouteSlot> WorkerPool::Acquire(const std::string& request_id,
                                             std::function<void(const Status&)> on_lost) {
  const std::optional<WorkerId> id = workers_.SelectWorker(*policy_);
  if (!id) return std::nullopt;
  Worker& w = *entries_[id->value()];
  RouteSlot slot;
  slot.id = *id;
  slot.stub = w.stub.get();
  slot.address = w.address;
  slot.in_flight = std::make_shared<InFlight>();
  slot.in_flight->worker = *id;
  slot.in_flight->request_id = request_id;
  slot.in_flight->on_lost = std::move(on_lost);
  slot.in_flight->Touch();
  std::lock_guard lock(mu_);
  slot.info = w.info;
  in_flight_.emplace(slot.in_flight.get(), slot.in_flight);
  return slot;
}

void WorkerPool::Release(const RouteSlot& slot) {
  {
    std::lock_guard lock(mu_);
    in_flight_.erase(slot.in_flight.get());
  }
  workers_.Release(slot.id);
}

int WorkerPool::FailAll(const Status& status) {
  std::vector<std::shared_ptr<InFlight>> all;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, r] : in_flight_) all.push_back(r);
  }
  int n = 0;
  for (auto& r : all) {
    if (!r->lost.exchange(true) && r->on_lost) {
      r->on_lost(status);
      ++n;
    }
  }
  return n;
}

int WorkerPool::in_flight() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(in_flight_.size());
}

void WorkerPool::MarkDown(WorkerId id) {
  std::shared_ptr<LoadStream> load;
  {
    std::lock_guard lock(mu_);
    if (id.value() >= entries_.size()) return;
    load = entries_[id.value()]->load;
  }
  SetUp(id, false);
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

std::optional<WorkerPool::SimulationTotals> WorkerPool::simulation_totals() const {
  SimulationTotals totals;
  for (const auto& w : entries_) {
    totals.expected_seconds += w->sim_expected_seconds.load(std::memory_order_relaxed);
    totals.actual_seconds += w->sim_actual_seconds.load(std::memory_order_relaxed);
  }
  if (totals.expected_seconds == 0 && totals.actual_seconds == 0) return std::nullopt;
  return totals;
}

}  // namespace tandem::frontend
