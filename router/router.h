// Router: the frontend's routing library (ARCHITECTURE §1, §3). It keeps
//   - the registry: the workers the frontend knows, keyed by a stable name from discovery, each
//     given a WorkerId that is never reused; whether each is up; its last load report and the
//     load predicted since from what this process routed there;
//   - the KV indexer (kv_indexer.h), fed by each worker's numbered KV events, with gap detection:
//     an event whose id is not the last applied + 1 is refused, and the caller resubscribes;
//   - the routing decision: Route(RouteRequest) picks a worker by the configured mode and
//     returns a RoutePlan, a move-only handle that holds the request's share of the worker's
//     predicted load until it is dropped.
//
// Router cost (mode kv), for worker w, a request of `isl` tokens, block size B and a prefix of
// d device, h host and k disk blocks cached on w:
//   overlap[w]        = d + host_weight·h + disk_weight·k
//   prefill_blocks[w] = queued_prefill_tokens[w]/B + isl/B − overlap[w]
//   decode_blocks[w]  = active_blocks[w] + ceil(isl/B) − d
//   cost[w]           = overlap_weight·prefill_blocks[w] + decode_blocks[w]
// The lowest cost wins (ties drawn at random); with temperature T > 0 the worker is drawn from
// softmax(−c/T) over costs normalized to [0, 1].
//
// Thread safety: every method may be called from any thread (one mutex). A RoutePlan must not
// outlive its Router.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "router/kv_indexer.h"
#include "tandem/block_hash.h"
#include "tandem/ids.h"
#include "tandem/kv_events.h"
#include "tandem/status.h"

namespace tandem::router {

enum class RouterMode { kKv, kRoundRobin, kRandom, kLeastLoaded };

// What a worker does (ARCHITECTURE §1): prefill workers take only the prefill of disaggregated
// requests; aggregated and decode workers take the rest (a decode worker prefills locally too).
enum class WorkerRole : uint8_t { kAggregated, kPrefill, kDecode };
// "kv", "round-robin", "random", "least-loaded"; anything else is InvalidArgument listing them.
StatusOr<RouterMode> ParseRouterMode(std::string_view name);
std::string_view RouterModeName(RouterMode mode);

struct RouterOptions {
  RouterMode mode = RouterMode::kKv;
  // Tokens per KV block; the frontend sets the cluster's with SetBlockSize once it is known.
  int block_size = 16;
  double overlap_weight = 1.0;
  // A cached block found on the host or the disk tier, as a fraction of a device hit.
  double host_weight = 0.75;
  double disk_weight = 0.25;
  double temperature = 0.0;
  // Seeds the draws (ties, temperature, random mode); 0: from std::random_device.
  uint64_t seed = 0;

  // InvalidArgument naming the flag when a value is out of range.
  Status Validate() const;
};

// ARCHITECTURE §3 "Load report", as a worker last sent it.
struct LoadReport {
  int active_requests = 0;
  int waiting_requests = 0;
  int active_blocks = 0;
  int free_blocks = 0;
  int64_t queued_prefill_tokens = 0;
  uint64_t kv_events_last_id = 0;
};

struct RouteRequest {
  std::span<const BlockHash> block_hashes = {};  // The prompt's full blocks, chained.
  int64_t prompt_tokens = 0;                     // isl
  // Among prefill workers (a disaggregated request's prefill); else among the workers that
  // decode (aggregated and decode).
  bool prefill = false;
};

// One worker as the router sees it.
struct WorkerView {
  WorkerId id;
  std::string name;
  WorkerRole role = WorkerRole::kAggregated;
  bool up = false;
  LoadReport load;
  int in_flight = 0;            // Requests this process has on it now.
  int routed_since_report = 0;  // Requests routed since its last report.
  int64_t predicted_queued_prefill_tokens = 0;
  int64_t predicted_active_blocks = 0;
  int predicted_requests = 0;
  uint64_t kv_last_applied_id = 0;
  size_t indexed_blocks = 0;
};

class Router;

// A routing decision held for one request: the worker, what it caches of the prompt, and the
// request's share of the worker's predicted load, given back when the plan is dropped (or on
// Release). Move-only.
class RoutePlan {
 public:
  RoutePlan() = default;
  RoutePlan(RoutePlan&& other) noexcept;
  RoutePlan& operator=(RoutePlan&& other) noexcept;
  ~RoutePlan() { Release(); }

  bool valid() const { return router_ != nullptr; }
  WorkerId worker() const { return worker_; }
  // Leading prompt blocks the worker holds, by tier, when the request was routed.
  const PrefixMatch& overlap() const { return overlap_; }
  double cost() const { return cost_; }
  // The prefill work the worker was predicted to have queued when the request was routed, before
  // the request's own (conditional disaggregation compares it with its threshold).
  int64_t queued_prefill_tokens() const { return queued_prefill_tokens_; }
  // The worker has prefilled the prompt (its first token came back): the prompt no longer
  // counts as queued prefill work.
  void PrefillDone();
  void Release();

 private:
  friend class Router;
  Router* router_ = nullptr;
  WorkerId worker_;
  PrefixMatch overlap_;
  double cost_ = 0;
  int64_t queued_prefill_tokens_ = 0;
  int64_t prefill_tokens_ = 0;  // Counted as queued on the worker until PrefillDone.
  int64_t blocks_ = 0;          // Counted as active on the worker until released.
};

// What a worker's KV event says, for ApplyKvEvent (the caller converts from the wire).
struct KvEventRecord {
  uint64_t id = 0;
  KvEvent::Kind kind = KvEvent::Kind::kStored;
  KvTier tier = KvTier::kDevice;
  std::span<const BlockHash> block_hashes = {};
};

class Router {
 public:
  static StatusOr<std::unique_ptr<Router>> Create(const RouterOptions& options);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Registry. AddWorker returns the id of a new worker, down until SetUp; a name already present
  // is AlreadyExists. RemoveWorker takes it out of routing for good and forgets its blocks; its
  // plans still release harmlessly. Unknown ids are ignored everywhere.
  StatusOr<WorkerId> AddWorker(std::string name);
  void RemoveWorker(WorkerId id);
  // Going down forgets the worker's load and its blocks (they are rebuilt from a snapshot when
  // it returns: its events may have been missed meanwhile).
  void SetUp(WorkerId id, bool up);
  // What the worker does, from its WorkerInfo (aggregated until told).
  void SetRole(WorkerId id, WorkerRole role);
  void UpdateLoad(WorkerId id, const LoadReport& load);

  // KV events. ApplyKvEvent refuses (FailedPrecondition, nothing applied) an event whose id is
  // not the last applied + 1, and (InvalidArgument) a malformed one; the caller then
  // resubscribes. Events and snapshots of a worker that is down or removed are ignored. A snapshot
  // replaces everything the worker held: BeginKvSnapshot, its parts, EndKvSnapshot(as_of) after
  // which events continue from as_of + 1.
  Status ApplyKvEvent(WorkerId id, const KvEventRecord& event);
  void BeginKvSnapshot(WorkerId id);
  Status ApplyKvSnapshotPart(WorkerId id, KvTier tier, std::span<const BlockHash> hashes);
  void EndKvSnapshot(WorkerId id, uint64_t as_of_event_id);
  // A snapshot cut short (its stream broke before the last part): the worker's blocks are
  // forgotten and its events wanted again from 1. Nothing happens outside a snapshot.
  void AbandonKvSnapshot(WorkerId id);
  // The id to resubscribe from: the last applied + 1.
  uint64_t NextKvEventId(WorkerId id) const;

  // The cluster's block size (positive), known once the first worker answers.
  void SetBlockSize(int block_size);

  // Picks a worker that is up and of the request's roles (nullopt when none is) and counts the
  // request on it.
  std::optional<RoutePlan> Route(const RouteRequest& request);

  const RouterOptions& options() const { return options_; }
  std::vector<WorkerView> Snapshot() const;
  size_t num_up() const;
  // Workers up that take prefills of disaggregated requests.
  size_t num_prefill_up() const;
  size_t num_workers() const;
  // Distinct blocks in the index, and (block, worker) pairs.
  size_t indexed_blocks() const;
  size_t indexed_entries() const;
  // KV events the workers reported that this router has not applied, summed over workers up.
  uint64_t kv_event_lag() const;

 private:
  friend class RoutePlan;
  struct Worker;

  explicit Router(const RouterOptions& options);
  Worker* Find(WorkerId id);
  const Worker* Find(WorkerId id) const;
  // The mode's choice among `up` (non-empty); `matches` holds the prefix matches by worker.
  size_t Choose(const std::vector<Worker*>& up, const RouteRequest& request,
                const std::vector<PrefixMatch>& matches, double* cost);
  // Where a rotation by id resumes among `up` (round-robin, least-loaded's ties).
  size_t RotationStart(const std::vector<Worker*>& up) const;
  void Settle(WorkerId id, int64_t prefill_tokens, int64_t blocks, bool release);

  const RouterOptions options_;
  mutable std::mutex mu_;
  int block_size_;                                // Guarded by mu_.
  std::vector<std::unique_ptr<Worker>> workers_;  // By id; removed ones are null.
  KvIndexer indexer_;
  std::mt19937_64 rng_;
  uint64_t last_round_robin_ = UINT64_MAX;
  // Scratch of Route, kept to avoid allocating per request.
  std::vector<PrefixMatch> matches_;
  std::vector<Worker*> up_;
  std::vector<double> costs_;
  std::vector<const PrefixMatch*> match_by_slot_;
};

}  // namespace tandem::router
