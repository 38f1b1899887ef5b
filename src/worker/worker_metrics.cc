#include "worker/worker_metrics.h"

namespace tandem::worker {
namespace {

prometheus::Gauge& SimpleGauge(prometheus::Registry& registry, const std::string& name,
                               const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

}  // namespace

WorkerMetrics::WorkerMetrics(prometheus::Registry& registry)
    : requests_family_(prometheus::BuildCounter()
                           .Name("tandem_worker_requests_total")
                           .Help("Generate calls by how they ended")
                           .Register(registry)),
      requests_stop_(requests_family_.Add({{"status", "stop"}})),
      requests_length_(requests_family_.Add({{"status", "length"}})),
      requests_cancelled_(requests_family_.Add({{"status", "cancelled"}})),
      requests_error_(requests_family_.Add({{"status", "error"}})),
      requests_invalid_(requests_family_.Add({{"status", "invalid"}})),
      requests_unavailable_(requests_family_.Add({{"status", "unavailable"}})),
      generated_tokens_(prometheus::BuildCounter()
                            .Name("tandem_worker_generated_tokens_total")
                            .Help("Tokens streamed to clients")
                            .Register(registry)
                            .Add({})),
      active_requests_(
          SimpleGauge(registry, "tandem_worker_active_requests", "Open Generate calls")),
      waiting_requests_(SimpleGauge(registry, "tandem_worker_waiting_requests",
                                    "Requests waiting for admission to the batch")),
      queued_prefill_tokens_(SimpleGauge(registry, "tandem_worker_queued_prefill_tokens",
                                         "Prompt tokens of requests whose prefill has not "
                                         "finished")),
      blocks_family_(prometheus::BuildGauge()
                         .Name("tandem_kvcache_blocks")
                         .Help("KV cache blocks by tier and state")
                         .Register(registry)),
      blocks_free_(blocks_family_.Add({{"tier", "device"}, {"state", "free"}})),
      blocks_used_(blocks_family_.Add({{"tier", "device"}, {"state", "used"}})),
      host_free_(blocks_family_.Add({{"tier", "host"}, {"state", "free"}})),
      host_used_(blocks_family_.Add({{"tier", "host"}, {"state", "used"}})),
      disk_free_(blocks_family_.Add({{"tier", "disk"}, {"state", "free"}})),
      disk_used_(blocks_family_.Add({{"tier", "disk"}, {"state", "used"}})),
      hits_family_(prometheus::BuildCounter()
                       .Name("tandem_kvcache_hits_total")
                       .Help("Blocks found on a KV tier when a prefix was looked up")
                       .Register(registry)),
      misses_family_(prometheus::BuildCounter()
                         .Name("tandem_kvcache_misses_total")
                         .Help("Blocks asked of a KV tier and not found (or failing their check)")
                         .Register(registry)),
      bytes_family_(prometheus::BuildCounter()
                        .Name("tandem_kvcache_bytes_total")
                        .Help("Bytes moved between KV tiers, by direction")
                        .Register(registry)),
      disk_errors_(prometheus::BuildCounter()
                       .Name("tandem_kvcache_disk_errors_total")
                       .Help("I/O errors of the disk tier (the first disables it)")
                       .Register(registry)
                       .Add({})),
      disk_disabled_(SimpleGauge(registry, "tandem_kvcache_disk_disabled",
                                 "1 once the disk tier is off after an error")),
      kv_leases_(SimpleGauge(registry, "tandem_worker_kv_leases",
                             "KV leases held for decode workers' pulls (prefill role)")),
      kv_leases_expired_(prometheus::BuildCounter()
                             .Name("tandem_worker_kv_leases_expired_total")
                             .Help("KV leases that expired unreleased")
                             .Register(registry)
                             .Add({})),
      kv_pulls_family_(prometheus::BuildCounter()
                           .Name("tandem_worker_kv_pulls_total")
                           .Help("Prompts whose KV a prefill worker computed, by outcome: "
                                 "pulled, or recomputed here (the source failed)")
                           .Register(registry)),
      kv_pulls_ok_(kv_pulls_family_.Add({{"outcome", "pulled"}})),
      kv_pulls_recomputed_(kv_pulls_family_.Add({{"outcome", "recomputed"}})),
      kv_pulled_bytes_(prometheus::BuildCounter()
                           .Name("tandem_worker_kv_pulled_bytes_total")
                           .Help("KV bytes pulled from prefill workers")
                           .Register(registry)
                           .Add({})),
      kv_pull_seconds_(prometheus::BuildCounter()
                           .Name("tandem_worker_kv_pull_seconds_total")
                           .Help("Time of successful KV pulls, from start to the lease's release")
                           .Register(registry)
                           .Add({})),
      sim_expected_(SimpleGauge(registry, "tandem_worker_mock_expected_seconds",
                                "Mock backend: predicted step time so far (real seconds)")),
      sim_actual_(SimpleGauge(registry, "tandem_worker_mock_actual_seconds",
                              "Mock backend: real time its steps took; above expected is slip")),
      ttft_(prometheus::BuildHistogram()
                .Name("tandem_worker_time_to_first_token_seconds")
                .Help("From a Generate call's arrival to its first token")
                .Register(registry)
                .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                                                 10, 30})),
      duration_(
          prometheus::BuildHistogram()
              .Name("tandem_worker_request_duration_seconds")
              .Help("From a Generate call's arrival to its last token")
              .Register(registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                               2.5, 5, 10, 30, 60, 120})),
      kv_event_subscribers_(SimpleGauge(registry, "tandem_worker_kv_event_subscribers",
                                        "Open SubscribeKvEvents streams")),
      kv_events_(prometheus::BuildCounter()
                     .Name("tandem_worker_kv_events_total")
                     .Help("KV events sent to subscribers (each event once per subscriber)")
                     .Register(registry)
                     .Add({})),
      kv_snapshots_(prometheus::BuildCounter()
                        .Name("tandem_worker_kv_snapshots_total")
                        .Help("KV snapshots sent to subscribers whose next event had left the "
                              "ring or who knew a previous incarnation of the worker")
                        .Register(registry)
                        .Add({})) {}

void WorkerMetrics::CountRequest(CallOutcome outcome) {
  switch (outcome) {
    case CallOutcome::kStop:
      requests_stop_.Increment();
      return;
    case CallOutcome::kLength:
      requests_length_.Increment();
      return;
    case CallOutcome::kCancelled:
      requests_cancelled_.Increment();
      return;
    case CallOutcome::kError:
      requests_error_.Increment();
      return;
    case CallOutcome::kInvalid:
      requests_invalid_.Increment();
      return;
    case CallOutcome::kUnavailable:
      requests_unavailable_.Increment();
      return;
  }
}

void WorkerMetrics::Update(const EngineStats& stats, int active_requests) {
  const KvTiersStats& tiers = stats.tiers;
  active_requests_.Set(active_requests);
  waiting_requests_.Set(stats.waiting);
  queued_prefill_tokens_.Set(static_cast<double>(stats.queued_prefill_tokens));
  blocks_free_.Set(stats.blocks_available);
  blocks_used_.Set(stats.blocks_total - stats.blocks_available);
  host_used_.Set(tiers.host_blocks);
  host_free_.Set(tiers.host_capacity - tiers.host_blocks);
  disk_used_.Set(tiers.disk_blocks);
  disk_free_.Set(tiers.disk_capacity - tiers.disk_blocks);
  disk_disabled_.Set(tiers.disk.disabled ? 1 : 0);
  kv_leases_.Set(stats.kv_leases);
  if (stats.simulation) {
    sim_expected_.Set(stats.simulation->expected_seconds);
    sim_actual_.Set(stats.simulation->actual_seconds);
  }

  // Counters advance by what the tiers' totals gained since the last update.
  std::lock_guard lock(tiers_mu_);
  const auto add = [](prometheus::Counter& c, uint64_t now, uint64_t before) {
    if (now > before) c.Increment(static_cast<double>(now - before));
  };
  const KvTiersStats& was = last_tiers_;
  add(hits_family_.Add({{"tier", "host"}}), tiers.host.hits, was.host.hits);
  add(hits_family_.Add({{"tier", "disk"}}), tiers.disk.hits, was.disk.hits);
  add(misses_family_.Add({{"tier", "host"}}), tiers.host.misses, was.host.misses);
  add(misses_family_.Add({{"tier", "disk"}}), tiers.disk.misses, was.disk.misses);
  add(bytes_family_.Add({{"direction", "device_to_host"}}), tiers.host.bytes_in, was.host.bytes_in);
  add(bytes_family_.Add({{"direction", "host_to_device"}}), tiers.host.bytes_out,
      was.host.bytes_out);
  add(bytes_family_.Add({{"direction", "to_disk"}}), tiers.disk.bytes_in, was.disk.bytes_in);
  add(bytes_family_.Add({{"direction", "from_disk"}}), tiers.disk.bytes_out, was.disk.bytes_out);
  add(disk_errors_, tiers.disk.errors, was.disk.errors);
  last_tiers_ = tiers;
  add(kv_leases_expired_, stats.kv_leases_expired, last_.kv_leases_expired);
  add(kv_pulls_ok_, stats.kv_pulls, last_.kv_pulls);
  add(kv_pulls_recomputed_, stats.kv_pull_recomputes, last_.kv_pull_recomputes);
  add(kv_pulled_bytes_, stats.kv_pulled_bytes, last_.kv_pulled_bytes);
  if (stats.kv_pull_seconds > last_.kv_pull_seconds) {
    kv_pull_seconds_.Increment(stats.kv_pull_seconds - last_.kv_pull_seconds);
  }
  last_ = stats;
}

}  // namespace tandem::worker
