#include "frontend/worker_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <span>
#include <utility>

#include "common/logging.h"
#include "common/status_macros.h"
#include "tandem/block_hash.h"

namespace tandem::frontend {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Seconds(int64_t ns) { return fmt::format("{:.1f}", static_cast<double>(ns) / 1e9); }

// The wire's tier, or nullopt for a value this build does not know.
std::optional<KvTier> TierFromWire(v1::KvTier tier) {
  switch (tier) {
    case v1::KV_TIER_DEVICE:
      return KvTier::kDevice;
    case v1::KV_TIER_HOST:
      return KvTier::kHost;
    case v1::KV_TIER_DISK:
      return KvTier::kDisk;
    default:
      return std::nullopt;
  }
}

std::span<const BlockHash> Hashes(const google::protobuf::RepeatedField<uint64_t>& field) {
  return {field.data(), static_cast<size_t>(field.size())};
}

}  // namespace

struct WorkerPool::Worker {
  WorkerId id;
  std::string name;
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::shared_ptr<v1::Worker::Stub> stub;
  // steady_clock nanoseconds of the last load report; written by the load stream's callback.
  std::atomic<int64_t> last_report_ns{0};
  // The last load report's simulation account (mock workers; both 0 otherwise).
  std::atomic<double> sim_expected_seconds{0};
  std::atomic<double> sim_actual_seconds{0};
  // Guarded by WorkerPool::mu_.
  bool connected = false;
  bool removed = false;
  bool warned_unreachable = false;  // Logged once per outage, not per probe.
  bool refused = false;             // Differs from the cluster (logged once).
  bool warned_kv = false;           // A KV stream failure was logged on this connection.
  v1::WorkerInfo info;
  std::shared_ptr<LoadStream> load;
  std::shared_ptr<KvEventStream> kv;
  uint64_t kv_generation = 0;  // Counts subscriptions; a stream's callbacks know theirs.
};

// One KV event subscription's progress, touched only by its stream's callbacks (one at a time,
// in order).
struct WorkerPool::KvSubscription {
  uint64_t generation = 0;
  bool failed = false;       // The stream is being cancelled: ignore what else arrives.
  bool in_snapshot = false;  // Between a snapshot's first and last part.
  uint64_t snapshot_as_of = 0;
  // The stream's callbacks may run before Subscribe has stored the stream. Guarded by
  // WorkerPool::mu_.
  bool cancel_wanted = false;  // A refusal came first: Subscribe cancels once it has the stream.
  bool done = false;           // It ended first: Subscribe must not store it.
};

void InFlight::Touch() { last_progress_ns.store(NowNs(), std::memory_order_relaxed); }

StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Create(WorkerPoolOptions options) {
  if (options.discovery == nullptr) return InvalidArgumentError("--workers: no worker given");
  if (options.stall_timeout_ms <= 0) {
    return InvalidArgumentError("--worker-stall-timeout must be positive");
  }
  if (options.progress_timeout_ms < 0) {
    return InvalidArgumentError("--request-progress-timeout must be >= 0");
  }
  auto router = router::Router::Create(options.router);
  if (!router.ok()) return router.status();
  std::unique_ptr<WorkerPool> pool(new WorkerPool(std::move(options), std::move(router).value()));
  if (Status s = pool->options_.discovery->Start(pool.get()); !s.ok()) return s;
  spdlog::info("discovery started source={} workers={} router_mode={}",
               pool->options_.discovery->description(), pool->num_workers(),
               router::RouterModeName(pool->options_.router.mode));
  pool->monitor_ = std::thread([p = pool.get()] { p->MonitorLoop(); });
  return pool;
}

WorkerPool::WorkerPool(WorkerPoolOptions options, std::unique_ptr<router::Router> router)
    : options_(std::move(options)), router_(std::move(router)) {}

WorkerPool::~WorkerPool() {
  options_.discovery->Stop();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();
  std::vector<std::shared_ptr<LoadStream>> loads;
  std::vector<std::shared_ptr<KvEventStream>> kvs;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, w] : workers_) {
      if (w->load) loads.push_back(std::move(w->load));
      if (w->kv) kvs.push_back(std::move(w->kv));
    }
  }
  for (auto& l : loads) l->Cancel();
  for (auto& k : kvs) k->Cancel();
  // The streams' callbacks touch this pool: wait until each has finished.
  for (auto& l : loads) {
    while (l.use_count() > 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (auto& k : kvs) {
    while (k.use_count() > 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void WorkerPool::OnWorkerAdded(const router::WorkerEndpoint& endpoint) {
  StatusOr<WorkerId> id = router_->AddWorker(endpoint.name);
  if (!id.ok()) {
    spdlog::warn("worker not added worker={} error={}", endpoint.name,
                 Quoted(id.status().ToString()));
    return;
  }
  auto w = std::make_shared<Worker>();
  w->id = *id;
  w->name = endpoint.name;
  w->address = endpoint.address;
  grpc::ChannelArguments args;
  // Notice a worker that comes (back) up within a probe or two, not gRPC's default minute.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // A snapshot of a large KV cache comes in parts, but leave room above gRPC's 4 MiB default.
  args.SetMaxReceiveMessageSize(64 << 20);
  w->channel = grpc::CreateCustomChannel(w->address, grpc::InsecureChannelCredentials(), args);
  w->stub = v1::Worker::NewStub(w->channel);
  {
    std::lock_guard lock(mu_);
    workers_.emplace(w->id, w);
  }
  spdlog::info("worker added worker={}", w->address);
  Wake();
}

void WorkerPool::OnWorkerRemoved(const std::string& name) {
  std::shared_ptr<Worker> w;
  {
    std::lock_guard lock(mu_);
    for (auto it = workers_.begin(); it != workers_.end(); ++it) {
      if (it->second->name != name) continue;
      w = it->second;
      w->removed = true;
      workers_.erase(it);
      break;
    }
  }
  if (w == nullptr) return;
  router_->RemoveWorker(w->id);
  SetUp(w->id, false);
  std::shared_ptr<LoadStream> load;
  std::shared_ptr<KvEventStream> kv;
  {
    std::lock_guard lock(mu_);
    load = w->load;
    kv = w->kv;
  }
  if (load) load->Cancel();
  if (kv) kv->Cancel();
  spdlog::info("worker removed worker={} (requests on it finish)", w->address);
}

void WorkerPool::Wake() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void WorkerPool::MonitorLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    std::vector<std::shared_ptr<Worker>> all;
    for (auto& [id, w] : workers_) all.push_back(w);
    for (const auto& w : all) {
      if (stopping_) break;
      if (w->removed) continue;
      if (w->connected) {
        const bool subscribe = w->kv == nullptr;
        lock.unlock();
        if (subscribe) Subscribe(w);
      } else {
        lock.unlock();
        // A probe of a stopped worker blocks until its deadline: check the others first.
        CheckLiveness();
        Probe(w);
      }
      lock.lock();
    }
    lock.unlock();
    CheckLiveness();
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(options_.probe_interval_ms),
                 [this] { return stopping_ || wake_; });
    wake_ = false;
  }
}

void WorkerPool::SetUp(WorkerId id, bool up) {
  router_->SetUp(id, up);
  if (!options_.on_up_changed) return;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
  }
  std::lock_guard lock(up_mu_);
  const size_t now_up = num_serving_up();
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
    for (auto& [id, w] : workers_) {
      if (!w->connected || w->load == nullptr) continue;
      const int64_t silent = now - w->last_report_ns.load(std::memory_order_relaxed);
      if (silent < stall_ns) continue;
      stalled.push_back(id);
      cancel.push_back(w->load);  // Its on_done marks the worker disconnected; probes follow.
      const Status status =
          UnavailableError("worker " + w->address + " stopped responding (no load report for " +
                           Seconds(silent) + " s)");
      const size_t before = lost.size();
      for (const auto& [key, r] : in_flight_) {
        if (r->worker == id) lost.emplace_back(r, status);
      }
      spdlog::warn("worker stopped responding worker={} silent_s={} in_flight={}", w->address,
                   Seconds(silent), lost.size() - before);
    }
    if (progress_ns > 0) {
      for (const auto& [key, r] : in_flight_) {
        const int64_t idle = now - r->last_progress_ns.load(std::memory_order_relaxed);
        if (idle < progress_ns || r->lost.load()) continue;
        if (std::find(stalled.begin(), stalled.end(), r->worker) != stalled.end()) continue;
        auto it = workers_.find(r->worker);
        const std::string address = it != workers_.end() ? it->second->address : "(removed)";
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

bool WorkerPool::Admit(Worker& w, const v1::WorkerInfo& info) {
  // The first worker to answer sets what the cluster computes; one that differs in model
  // identity or block size would share no cached block with the others and hash prompts
  // differently.
  if (!cluster_) {
    cluster_ = ClusterIdentity{info.model_identity(), info.block_size()};
    router_->SetBlockSize(info.block_size());
  }
  std::string reason;
  if (info.block_size() != cluster_->block_size) {
    reason = "block size differs";
  } else if (info.model_identity() != cluster_->model_identity) {
    reason = "model identity differs";
  } else if (info.block_hash_seed() != BlockHashSeed(info.model_identity())) {
    reason = "block hash seed does not follow from the model identity";
  }
  if (reason.empty()) {
    if (w.refused) {
      w.refused = false;
      refused_.fetch_sub(1, std::memory_order_relaxed);
    }
    return true;
  }
  if (!w.refused) {
    w.refused = true;
    refused_.fetch_add(1, std::memory_order_relaxed);
    spdlog::error(
        "worker refused worker={} reason={} block_size={} cluster_block_size={} "
        "model_identity={} cluster_model_identity={}",
        w.address, Quoted(reason), info.block_size(), cluster_->block_size,
        Quoted(info.model_identity()), Quoted(cluster_->model_identity));
  }
  return false;
}

void WorkerPool::Probe(const std::shared_ptr<Worker>& w) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(options_.probe_timeout_ms));
  v1::GetInfoRequest request;
  v1::WorkerInfo info;
  const grpc::Status status = w->stub->GetInfo(&context, request, &info);
  if (!status.ok()) {
    bool warn = false;
    {
      std::lock_guard lock(mu_);
      warn = !w->warned_unreachable && !stopping_ && !w->removed;
      w->warned_unreachable = true;
    }
    if (warn) {
      spdlog::warn("worker unreachable worker={} error={} retry_ms={}", w->address,
                   Quoted(status.error_message()), options_.probe_interval_ms);
    } else {
      spdlog::debug("worker probe failed worker={} error={}", w->address,
                    Quoted(status.error_message()));
    }
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_ || w->removed || !Admit(*w, info)) return;
    w->info = info;
    w->connected = true;
    w->warned_unreachable = false;
    w->warned_kv = false;
  }
  w->last_report_ns.store(NowNs(), std::memory_order_relaxed);
  StartLoadStream(w);
  {
    std::lock_guard lock(mu_);
    if (!w->connected) return;  // The stream already ended.
  }
  router_->SetRole(w->id, info.role() == v1::WORKER_ROLE_PREFILL ? router::WorkerRole::kPrefill
                          : info.role() == v1::WORKER_ROLE_DECODE
                              ? router::WorkerRole::kDecode
                              : router::WorkerRole::kAggregated);
  SetUp(w->id, true);
  Subscribe(w);
  spdlog::info("worker up worker={} model={} max_model_len={} block_size={}", w->address,
               Quoted(info.model()), info.max_model_len(), info.block_size());
}

void WorkerPool::StartLoadStream(const std::shared_ptr<Worker>& w) {
  v1::StreamLoadRequest request;
  request.set_interval_ms(options_.load_interval_ms);
  // Started outside mu_: its callbacks take mu_. They hold the worker, which may leave the
  // registry meanwhile.
  std::shared_ptr<LoadStream> load = LoadStream::Start(
      *w->stub, &v1::Worker::Stub::async_interface::StreamLoad, request,
      {.on_response =
           [this, w](v1::LoadReport&& r) {
             w->last_report_ns.store(NowNs(), std::memory_order_relaxed);
             w->sim_expected_seconds.store(r.sim_expected_seconds(), std::memory_order_relaxed);
             w->sim_actual_seconds.store(r.sim_actual_seconds(), std::memory_order_relaxed);
             router_->UpdateLoad(
                 w->id, router::LoadReport{.active_requests = r.active_requests(),
                                           .waiting_requests = r.waiting_requests(),
                                           .active_blocks = r.active_blocks(),
                                           .free_blocks = r.free_blocks(),
                                           .queued_prefill_tokens = r.queued_prefill_tokens(),
                                           .kv_events_last_id = r.kv_events_last_id()});
           },
       .on_done =
           [this, w](const grpc::Status& s) {
             bool log = false;
             std::shared_ptr<KvEventStream> kv;
             {
               std::lock_guard lock(mu_);
               w->connected = false;
               w->load.reset();
               kv = w->kv;
               log = !stopping_ && !w->removed;
             }
             // Down, the router forgets its blocks; the subscription starts anew when it is
             // back.
             if (kv) kv->Cancel();
             SetUp(w->id, false);
             if (log) {
               spdlog::warn("worker down worker={} error={}", w->address,
                            Quoted(s.error_message()));
             }
           }});
  std::lock_guard lock(mu_);
  if (w->connected) w->load = std::move(load);
}

void WorkerPool::Subscribe(const std::shared_ptr<Worker>& w) {
  router_->AbandonKvSnapshot(w->id);  // One the last stream left unfinished.
  v1::SubscribeKvEventsRequest request;
  request.set_from_event_id(router_->NextKvEventId(w->id));
  auto sub = std::make_shared<KvSubscription>();
  {
    std::lock_guard lock(mu_);
    if (!w->connected || w->removed || stopping_ || w->kv != nullptr) return;
    sub->generation = ++w->kv_generation;
  }
  std::shared_ptr<KvEventStream> kv = KvEventStream::Start(
      *w->stub, &v1::Worker::Stub::async_interface::SubscribeKvEvents, request,
      {.on_response =
           [this, w, sub](v1::KvEventBatch&& batch) {
             if (sub->failed) return;
             Status s = ApplyKvBatch(w->id, *sub, batch);
             if (s.ok()) return;
             sub->failed = true;
             resubscriptions_.fetch_add(1, std::memory_order_relaxed);
             std::shared_ptr<KvEventStream> kv;
             bool log = false;
             {
               std::lock_guard lock(mu_);
               if (w->kv_generation == sub->generation && w->kv != nullptr) {
                 kv = w->kv;
               } else {
                 sub->cancel_wanted = true;
               }
               log = !w->warned_kv;
               w->warned_kv = true;
             }
             if (log) {
               spdlog::warn("kv events refused, resubscribing worker={} from_event_id={} error={}",
                            w->address, router_->NextKvEventId(w->id), Quoted(s.ToString()));
             }
             if (kv) kv->Cancel();
           },
       .on_done =
           [this, w, sub](const grpc::Status& s) {
             bool again = false;
             {
               std::lock_guard lock(mu_);
               sub->done = true;
               if (w->kv_generation != sub->generation) return;  // A newer one runs.
               w->kv.reset();
               again = w->connected && !w->removed && !stopping_;
               if (again && !sub->failed) {
                 // The stream broke while the worker is up: count it as a resubscription.
                 resubscriptions_.fetch_add(1, std::memory_order_relaxed);
                 if (!w->warned_kv) {
                   w->warned_kv = true;
                   spdlog::warn("kv event stream ended, resubscribing worker={} error={}",
                                w->address, Quoted(s.error_message()));
                 }
               }
             }
             if (again) Wake();  // The monitor subscribes again.
           }});
  bool cancel = false;
  {
    std::lock_guard lock(mu_);
    if (sub->done) return;  // Over already; its end woke the monitor.
    if (w->kv_generation == sub->generation && w->connected && !w->removed) {
      w->kv = kv;
      cancel = sub->cancel_wanted;  // Refused before it was stored here.
    } else {
      cancel = true;  // The worker went down or left meanwhile.
    }
  }
  if (cancel) kv->Cancel();
}

Status WorkerPool::ApplyKvBatch(WorkerId id, KvSubscription& sub, const v1::KvEventBatch& batch) {
  if (batch.has_snapshot()) {
    const v1::KvSnapshotPart& part = batch.snapshot();
    if (!sub.in_snapshot) {
      router_->BeginKvSnapshot(id);
      sub.in_snapshot = true;
      sub.snapshot_as_of = part.as_of_event_id();
    } else if (part.as_of_event_id() != sub.snapshot_as_of) {
      return InvalidArgumentError(fmt::format("a snapshot part as of event {} inside one as of {}",
                                              part.as_of_event_id(), sub.snapshot_as_of));
    }
    if (part.block_hashes_size() > 0) {
      const std::optional<KvTier> tier = TierFromWire(part.tier());
      if (!tier) {
        return InvalidArgumentError(
            fmt::format("a snapshot part names tier {}", static_cast<int>(part.tier())));
      }
      TANDEM_RETURN_IF_ERROR(router_->ApplyKvSnapshotPart(id, *tier, Hashes(part.block_hashes())));
    }
    if (part.last()) {
      router_->EndKvSnapshot(id, sub.snapshot_as_of);
      sub.in_snapshot = false;
      snapshots_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (batch.events_size() > 0 && sub.in_snapshot) {
    return InvalidArgumentError("events arrived before the snapshot's last part");
  }
  for (const v1::KvEvent& e : batch.events()) {
    router::KvEventRecord record{.id = e.id()};
    switch (e.kind_case()) {
      case v1::KvEvent::kStored:
        record.kind = KvEvent::Kind::kStored;
        record.tier = TierFromWire(e.stored().tier()).value_or(static_cast<KvTier>(0));
        record.block_hashes = Hashes(e.stored().block_hashes());
        break;
      case v1::KvEvent::kRemoved:
        record.kind = KvEvent::Kind::kRemoved;
        record.tier = TierFromWire(e.removed().tier()).value_or(static_cast<KvTier>(0));
        record.block_hashes = Hashes(e.removed().block_hashes());
        break;
      case v1::KvEvent::kCleared:
        record.kind = KvEvent::Kind::kCleared;
        break;
      default:
        return InvalidArgumentError(fmt::format("KV event {} has no kind", e.id()));
    }
    TANDEM_RETURN_IF_ERROR(router_->ApplyKvEvent(id, record));
  }
  return OkStatus();
}

std::optional<RouteSlot> WorkerPool::Route(const router::RouteRequest& request,
                                           const std::string& request_id,
                                           std::function<void(const Status&)> on_lost) {
  // A worker removed between the decision and the lookup: decide again (a few times at most).
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::optional<router::RoutePlan> plan = router_->Route(request);
    if (!plan) return std::nullopt;
    std::lock_guard lock(mu_);
    auto it = workers_.find(plan->worker());
    if (it == workers_.end()) continue;
    const Worker& w = *it->second;
    RouteSlot slot;
    slot.id = w.id;
    slot.stub = w.stub;
    slot.address = w.address;
    slot.plan = std::move(*plan);
    slot.in_flight = std::make_shared<InFlight>();
    slot.in_flight->worker = w.id;
    slot.in_flight->request_id = request_id;
    slot.in_flight->on_lost = std::move(on_lost);
    slot.in_flight->Touch();
    in_flight_.emplace(slot.in_flight.get(), slot.in_flight);
    return slot;
  }
  return std::nullopt;
}

void WorkerPool::Release(RouteSlot& slot) {
  if (slot.in_flight) {
    std::lock_guard lock(mu_);
    in_flight_.erase(slot.in_flight.get());
  }
  slot.plan.Release();
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
    auto it = workers_.find(id);
    if (it == workers_.end()) return;
    load = it->second->load;
  }
  SetUp(id, false);
  // Ending the load stream makes the monitor probe the worker again.
  if (load) load->Cancel();
}

size_t WorkerPool::num_serving_up() const {
  const size_t up = router_->num_up();
  const size_t prefill = router_->num_prefill_up();
  return up > prefill ? up - prefill : 0;
}

std::optional<v1::WorkerInfo> WorkerPool::ClusterInfo() const {
  std::lock_guard lock(mu_);
  for (const auto& [id, w] : workers_) {
    if (w->connected) return w->info;
  }
  return std::nullopt;
}

std::optional<WorkerPool::SimulationTotals> WorkerPool::simulation_totals() const {
  SimulationTotals totals;
  std::lock_guard lock(mu_);
  for (const auto& [id, w] : workers_) {
    totals.expected_seconds += w->sim_expected_seconds.load(std::memory_order_relaxed);
    totals.actual_seconds += w->sim_actual_seconds.load(std::memory_order_relaxed);
  }
  if (totals.expected_seconds == 0 && totals.actual_seconds == 0) return std::nullopt;
  return totals;
}

}  // namespace tandem::frontend
