#include "router/router.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace tandem::router {

struct Router::Worker {
  WorkerId id;
  std::string name;
  WorkerRole role = WorkerRole::kAggregated;
  bool up = false;
  bool in_snapshot = false;
  LoadReport load;
  // Changes this process made since the last report (negative once released or prefilled).
  int routed_since_report = 0;
  int64_t prefill_tokens_since_report = 0;
  int64_t blocks_since_report = 0;
  // This process's own requests on the worker: a floor under the prediction.
  int in_flight = 0;
  int64_t own_queued_prefill_tokens = 0;
  uint64_t kv_last_applied_id = 0;

  int PredictedRequests() const {
    return std::max(load.active_requests + load.waiting_requests + routed_since_report, in_flight);
  }
  int64_t PredictedQueuedPrefillTokens() const {
    return std::max(load.queued_prefill_tokens + prefill_tokens_since_report,
                    own_queued_prefill_tokens);
  }
  int64_t PredictedActiveBlocks() const {
    return std::max<int64_t>(load.active_blocks + blocks_since_report, 0);
  }
  WorkerSlot slot() const { return static_cast<WorkerSlot>(id.value()); }
};

namespace {

bool ValidTier(KvTier tier) {
  const int t = static_cast<int>(tier);
  return t >= static_cast<int>(KvTier::kDevice) && t <= static_cast<int>(KvTier::kDisk);
}

}  // namespace

StatusOr<RouterMode> ParseRouterMode(std::string_view name) {
  for (RouterMode mode :
       {RouterMode::kKv, RouterMode::kRoundRobin, RouterMode::kRandom, RouterMode::kLeastLoaded}) {
    if (name == RouterModeName(mode)) return mode;
  }
  return InvalidArgumentError(fmt::format(
      "unknown router mode '{}' (expected kv, round-robin, random or least-loaded)", name));
}

std::string_view RouterModeName(RouterMode mode) {
  switch (mode) {
    case RouterMode::kKv:
      return "kv";
    case RouterMode::kRoundRobin:
      return "round-robin";
    case RouterMode::kRandom:
      return "random";
    case RouterMode::kLeastLoaded:
      return "least-loaded";
  }
  return "unknown";
}

Status RouterOptions::Validate() const {
  if (block_size <= 0) return InvalidArgumentError("the router's block size must be positive");
  auto check = [](double value, const char* flag) {
    if (!std::isfinite(value) || value < 0) {
      return InvalidArgumentError(fmt::format("{} must be a finite number >= 0", flag));
    }
    return OkStatus();
  };
  for (auto [value, flag] : {std::pair{overlap_weight, "--router-overlap-weight"},
                             std::pair{host_weight, "--router-host-weight"},
                             std::pair{disk_weight, "--router-disk-weight"},
                             std::pair{temperature, "--router-temperature"}}) {
    if (Status s = check(value, flag); !s.ok()) return s;
  }
  if (host_weight > 1 || disk_weight > 1) {
    return InvalidArgumentError("--router-host-weight and --router-disk-weight must be <= 1");
  }
  return OkStatus();
}

// --- RoutePlan -----------------------------------------------------------------------------

RoutePlan::RoutePlan(RoutePlan&& other) noexcept { *this = std::move(other); }

RoutePlan& RoutePlan::operator=(RoutePlan&& other) noexcept {
  if (this == &other) return *this;
  Release();
  router_ = std::exchange(other.router_, nullptr);
  worker_ = other.worker_;
  overlap_ = other.overlap_;
  cost_ = other.cost_;
  queued_prefill_tokens_ = other.queued_prefill_tokens_;
  prefill_tokens_ = std::exchange(other.prefill_tokens_, 0);
  blocks_ = std::exchange(other.blocks_, 0);
  return *this;
}

void RoutePlan::PrefillDone() {
  if (router_ == nullptr || prefill_tokens_ == 0) return;
  router_->Settle(worker_, prefill_tokens_, 0, /*release=*/false);
  prefill_tokens_ = 0;
}

void RoutePlan::Release() {
  if (router_ == nullptr) return;
  router_->Settle(worker_, prefill_tokens_, blocks_, /*release=*/true);
  router_ = nullptr;
  prefill_tokens_ = 0;
  blocks_ = 0;
}

// --- Router --------------------------------------------------------------------------------

StatusOr<std::unique_ptr<Router>> Router::Create(const RouterOptions& options) {
  if (Status s = options.Validate(); !s.ok()) return s;
  return std::unique_ptr<Router>(new Router(options));
}

Router::Router(const RouterOptions& options)
    : options_(options),
      block_size_(options.block_size),
      rng_(options.seed != 0 ? options.seed : std::random_device{}()) {}

Router::~Router() = default;

Router::Worker* Router::Find(WorkerId id) {
  return id.value() < workers_.size() ? workers_[id.value()].get() : nullptr;
}

const Router::Worker* Router::Find(WorkerId id) const {
  return id.value() < workers_.size() ? workers_[id.value()].get() : nullptr;
}

StatusOr<WorkerId> Router::AddWorker(std::string name) {
  std::lock_guard lock(mu_);
  for (const auto& w : workers_) {
    if (w && w->name == name) return AlreadyExistsError("worker '" + name + "' is already known");
  }
  auto w = std::make_unique<Worker>();
  w->id = WorkerId(workers_.size());
  w->name = std::move(name);
  workers_.push_back(std::move(w));
  return workers_.back()->id;
}

void Router::RemoveWorker(WorkerId id) {
  std::lock_guard lock(mu_);
  Worker* w = Find(id);
  if (w == nullptr) return;
  indexer_.RemoveWorker(w->slot());
  workers_[id.value()].reset();
}

void Router::SetRole(WorkerId id, WorkerRole role) {
  std::lock_guard lock(mu_);
  if (Worker* w = Find(id)) w->role = role;
}

void Router::SetUp(WorkerId id, bool up) {
  std::lock_guard lock(mu_);
  Worker* w = Find(id);
  if (w == nullptr || w->up == up) return;
  w->up = up;
  if (up) return;
  w->load = LoadReport{};
  w->routed_since_report = 0;
  w->prefill_tokens_since_report = 0;
  w->blocks_since_report = 0;
  w->kv_last_applied_id = 0;
  w->in_snapshot = false;
  indexer_.RemoveWorker(w->slot());
}

void Router::UpdateLoad(WorkerId id, const LoadReport& load) {
  std::lock_guard lock(mu_);
  Worker* w = Find(id);
  if (w == nullptr) return;
  w->load = load;
  w->routed_since_report = 0;
  w->prefill_tokens_since_report = 0;
  w->blocks_since_report = 0;
}

Status Router::ApplyKvEvent(WorkerId id, const KvEventRecord& event) {
  std::lock_guard lock(mu_);
  Worker* w = Find(id);
  // A worker removed or down: its stream is being cancelled and what is still in flight is moot.
  if (w == nullptr || !w->up) return OkStatus();
  if (w->in_snapshot) return FailedPreconditionError("a KV event arrived inside a snapshot");
  if (event.id != w->kv_last_applied_id + 1) {
    return FailedPreconditionError(fmt::format("KV event {} follows event {}: events were missed",
                                               event.id, w->kv_last_applied_id));
  }
  switch (event.kind) {
    case KvEvent::Kind::kStored:
    case KvEvent::Kind::kRemoved:
      if (!ValidTier(event.tier)) {
        return InvalidArgumentError(
            fmt::format("KV event {} names tier {}", event.id, static_cast<int>(event.tier)));
      }
      if (event.kind == KvEvent::Kind::kStored) {
        indexer_.Stored(w->slot(), event.tier, event.block_hashes);
      } else {
        indexer_.Removed(w->slot(), event.tier, event.block_hashes);
      }
      break;
    case KvEvent::Kind::kCleared:
      indexer_.RemoveWorker(w->slot());
      break;
    default:
      return InvalidArgumentError(fmt::format("KV event {} has an unknown kind", event.id));
  }
  w->kv_last_applied_id = event.id;
  return OkStatus();
}

void Router::BeginKvSnapshot(WorkerId id) {
  std::lock_guard lock(mu_);
  Worker* w = Find(id);
  if (w == nullptr || !w->up) return;
  indexer_.RemoveWorker(w->slot());
  w->in_snapshot = true;
}

Status Router::ApplyKvSnapshotPart(WorkerId id, KvTier tier, std::span<const BlockHash> hashes) {
  std::lock_guard lock(mu_);
  Worker* w = Find(id);
  if (w == nullptr || !w->up) return OkStatus();
  if (!w->in_snapshot) return FailedPreconditionError("a snapshot part arrived outside a snapshot");
  if (!ValidTier(tier)) {
    return InvalidArgumentError(
        fmt::format("a KV snapshot part names tier {}", static_cast<int>(tier)));
  }
  indexer_.Stored(w->slot(), tier, hashes);
  return OkStatus();
}

void Router::EndKvSnapshot(WorkerId id, uint64_t as_of_event_id) {
  std::lock_guard lock(mu_);
  Worker* w = Find(id);
  if (w == nullptr || !w->up || !w->in_snapshot) return;
  w->in_snapshot = false;
  w->kv_last_applied_id = as_of_event_id;
}

void Router::AbandonKvSnapshot(WorkerId id) {
  std::lock_guard lock(mu_);
  Worker* w = Find(id);
  if (w == nullptr || !w->in_snapshot) return;
  indexer_.RemoveWorker(w->slot());
  w->in_snapshot = false;
  w->kv_last_applied_id = 0;
}

uint64_t Router::NextKvEventId(WorkerId id) const {
  std::lock_guard lock(mu_);
  const Worker* w = Find(id);
  return w == nullptr ? 1 : w->kv_last_applied_id + 1;
}

void Router::SetBlockSize(int block_size) {
  if (block_size <= 0) return;
  std::lock_guard lock(mu_);
  block_size_ = block_size;
}

std::optional<RoutePlan> Router::Route(const RouteRequest& request) {
  std::lock_guard lock(mu_);
  up_.clear();
  for (const auto& w : workers_) {
    if (w && w->up && (w->role == WorkerRole::kPrefill) == request.prefill) {
      up_.push_back(w.get());
    }
  }
  if (up_.empty()) return std::nullopt;
  matches_.clear();
  indexer_.FindMatches(request.block_hashes, &matches_);
  double cost = 0;
  const size_t chosen = Choose(up_, request, matches_, &cost);
  Worker& w = *up_[chosen];

  RoutePlan plan;
  plan.router_ = this;
  plan.worker_ = w.id;
  plan.cost_ = cost;
  plan.queued_prefill_tokens_ = w.PredictedQueuedPrefillTokens();
  plan.overlap_.worker = w.slot();
  for (const PrefixMatch& m : matches_) {
    if (m.worker == w.slot()) plan.overlap_ = m;
  }
  const int64_t b = block_size_;
  const PrefixMatch& o = plan.overlap_;
  const double cached_blocks =
      o.device_blocks + options_.host_weight * o.host_blocks + options_.disk_weight * o.disk_blocks;
  plan.prefill_tokens_ = std::max<int64_t>(
      request.prompt_tokens - static_cast<int64_t>(std::llround(cached_blocks * b)), 0);
  plan.blocks_ = std::max<int64_t>((request.prompt_tokens + b - 1) / b - o.device_blocks, 0);

  ++w.in_flight;
  ++w.routed_since_report;
  w.prefill_tokens_since_report += plan.prefill_tokens_;
  w.own_queued_prefill_tokens += plan.prefill_tokens_;
  w.blocks_since_report += plan.blocks_;
  return plan;
}

size_t Router::RotationStart(const std::vector<Worker*>& up) const {
  // The first worker after the last one chosen, by id: fair when workers come and go.
  for (size_t i = 0; i < up.size(); ++i) {
    if (last_round_robin_ == UINT64_MAX || up[i]->id.value() > last_round_robin_) return i;
  }
  return 0;
}

size_t Router::Choose(const std::vector<Worker*>& up, const RouteRequest& request,
                      const std::vector<PrefixMatch>& matches, double* cost) {
  switch (options_.mode) {
    case RouterMode::kRoundRobin: {
      const size_t pick = RotationStart(up);
      last_round_robin_ = up[pick]->id.value();
      return pick;
    }
    case RouterMode::kRandom:
      return std::uniform_int_distribution<size_t>(0, up.size() - 1)(rng_);
    case RouterMode::kLeastLoaded: {
      const size_t start = RotationStart(up);
      auto key = [&](size_t i) {
        return std::make_pair(up[i]->PredictedRequests(), up[i]->PredictedActiveBlocks());
      };
      size_t best = start;
      for (size_t k = 1; k < up.size(); ++k) {
        const size_t i = (start + k) % up.size();
        if (key(i) < key(best)) best = i;
      }
      last_round_robin_ = up[best]->id.value();
      return best;
    }
    case RouterMode::kKv:
      break;
  }

  // kv: ARCHITECTURE §3 "Router cost".
  const double b = block_size_;
  const double isl_blocks = static_cast<double>(request.prompt_tokens) / b;
  const double new_blocks = std::ceil(isl_blocks);
  costs_.assign(up.size(), 0.0);
  match_by_slot_.assign(workers_.size(), nullptr);
  for (const PrefixMatch& m : matches) {
    if (m.worker < match_by_slot_.size()) match_by_slot_[m.worker] = &m;
  }
  for (size_t i = 0; i < up.size(); ++i) {
    const Worker& w = *up[i];
    const PrefixMatch* found = match_by_slot_[w.slot()];
    const PrefixMatch m = found != nullptr ? *found : PrefixMatch{};
    const double overlap = m.device_blocks + options_.host_weight * m.host_blocks +
                           options_.disk_weight * m.disk_blocks;
    const double prefill_blocks =
        static_cast<double>(w.PredictedQueuedPrefillTokens()) / b + isl_blocks - overlap;
    const double decode_blocks =
        static_cast<double>(w.PredictedActiveBlocks()) + new_blocks - m.device_blocks;
    costs_[i] = options_.overlap_weight * prefill_blocks + decode_blocks;
  }
  const auto [lo, hi] = std::minmax_element(costs_.begin(), costs_.end());
  const double min_cost = *lo;
  const double max_cost = *hi;
  size_t pick = 0;
  if (options_.temperature > 0 && max_cost > min_cost) {
    // softmax(−c/T) over costs normalized to [0, 1]: T is independent of the cluster's scale.
    std::vector<double> weights(up.size());
    for (size_t i = 0; i < up.size(); ++i) {
      const double normalized = (costs_[i] - min_cost) / (max_cost - min_cost);
      weights[i] = std::exp(-normalized / options_.temperature);
    }
    pick = std::discrete_distribution<size_t>(weights.begin(), weights.end())(rng_);
  } else {
    // Ties (within rounding) are drawn at random, so frontends that see the same reports do
    // not all pick the same worker.
    size_t ties = 0;
    const double eps = 1e-9 * std::max(1.0, std::abs(min_cost));
    for (size_t i = 0; i < up.size(); ++i) {
      if (costs_[i] - min_cost > eps) continue;
      if (std::uniform_int_distribution<size_t>(0, ties)(rng_) == 0) pick = i;
      ++ties;
    }
  }
  *cost = costs_[pick];
  return pick;
}

void Router::Settle(WorkerId id, int64_t prefill_tokens, int64_t blocks, bool release) {
  std::lock_guard lock(mu_);
  Worker* w = Find(id);
  if (w == nullptr) return;
  w->prefill_tokens_since_report -= prefill_tokens;
  w->own_queued_prefill_tokens =
      std::max<int64_t>(w->own_queued_prefill_tokens - prefill_tokens, 0);
  if (!release) return;
  w->blocks_since_report -= blocks;
  --w->routed_since_report;
  w->in_flight = std::max(w->in_flight - 1, 0);
}

std::vector<WorkerView> Router::Snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<WorkerView> views;
  for (const auto& w : workers_) {
    if (!w) continue;
    views.push_back(WorkerView{.id = w->id,
                               .name = w->name,
                               .role = w->role,
                               .up = w->up,
                               .load = w->load,
                               .in_flight = w->in_flight,
                               .routed_since_report = w->routed_since_report,
                               .predicted_queued_prefill_tokens = w->PredictedQueuedPrefillTokens(),
                               .predicted_active_blocks = w->PredictedActiveBlocks(),
                               .predicted_requests = w->PredictedRequests(),
                               .kv_last_applied_id = w->kv_last_applied_id,
                               .indexed_blocks = indexer_.worker_blocks(w->slot())});
  }
  return views;
}

size_t Router::num_up() const {
  std::lock_guard lock(mu_);
  return std::count_if(workers_.begin(), workers_.end(), [](const auto& w) { return w && w->up; });
}

size_t Router::num_prefill_up() const {
  std::lock_guard lock(mu_);
  return std::count_if(workers_.begin(), workers_.end(),
                       [](const auto& w) { return w && w->up && w->role == WorkerRole::kPrefill; });
}

size_t Router::num_workers() const {
  std::lock_guard lock(mu_);
  return std::count_if(workers_.begin(), workers_.end(),
                       [](const auto& w) { return w != nullptr; });
}

size_t Router::indexed_blocks() const {
  std::lock_guard lock(mu_);
  return indexer_.num_blocks();
}

size_t Router::indexed_entries() const {
  std::lock_guard lock(mu_);
  return indexer_.num_entries();
}

uint64_t Router::kv_event_lag() const {
  std::lock_guard lock(mu_);
  uint64_t lag = 0;
  for (const auto& w : workers_) {
    if (!w || !w->up) continue;
    if (w->load.kv_events_last_id > w->kv_last_applied_id) {
      lag += w->load.kv_events_last_id - w->kv_last_applied_id;
    }
  }
  return lag;
}

}  // namespace tandem::router
