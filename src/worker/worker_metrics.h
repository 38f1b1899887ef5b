// The worker's Prometheus metrics. Counters and histograms are updated where events happen
// (the dispatcher thread, gRPC threads); gauges are set from engine stats by a periodic task.
//
// Thread safety: every method is thread-safe (prometheus-cpp metrics are).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <mutex>

#include "tandem/engine.h"

namespace tandem::worker {

// How a Generate call ended, the `status` label of tandem_worker_requests_total.
enum class CallOutcome { kStop, kLength, kCancelled, kError, kInvalid, kUnavailable };

class WorkerMetrics {
 public:
  // Registers the worker's families in `registry`, which must outlive this object.
  explicit WorkerMetrics(prometheus::Registry& registry);
  WorkerMetrics(const WorkerMetrics&) = delete;
  WorkerMetrics& operator=(const WorkerMetrics&) = delete;

  void CountRequest(CallOutcome outcome);
  void AddGeneratedTokens(int n) { generated_tokens_.Increment(n); }
  void ObserveTimeToFirstToken(double seconds) { ttft_.Observe(seconds); }
  void ObserveRequestDuration(double seconds) { duration_.Observe(seconds); }
  // SubscribeKvEvents: a stream opened, or is done; events and snapshots sent.
  void KvEventSubscriberOpened() { kv_event_subscribers_.Increment(); }
  void KvEventSubscriberClosed() { kv_event_subscribers_.Decrement(); }
  void AddKvEventsSent(int n) { kv_events_.Increment(n); }
  void CountKvSnapshot() { kv_snapshots_.Increment(); }
  // Gauges from a snapshot of the engine plus the worker's open Generate calls; the KV tiers'
  // gauges, and their counters advanced to the tiers' totals.
  void Update(const EngineStats& stats, int active_requests);

 private:
  prometheus::Family<prometheus::Counter>& requests_family_;
  prometheus::Counter& requests_stop_;
  prometheus::Counter& requests_length_;
  prometheus::Counter& requests_cancelled_;
  prometheus::Counter& requests_error_;
  prometheus::Counter& requests_invalid_;
  prometheus::Counter& requests_unavailable_;
  prometheus::Counter& generated_tokens_;
  prometheus::Gauge& active_requests_;
  prometheus::Gauge& waiting_requests_;
  prometheus::Gauge& queued_prefill_tokens_;
  prometheus::Family<prometheus::Gauge>& blocks_family_;
  prometheus::Gauge& blocks_free_;
  prometheus::Gauge& blocks_used_;
  prometheus::Gauge& host_free_;
  prometheus::Gauge& host_used_;
  prometheus::Gauge& disk_free_;
  prometheus::Gauge& disk_used_;
  prometheus::Family<prometheus::Counter>& hits_family_;
  prometheus::Family<prometheus::Counter>& misses_family_;
  prometheus::Family<prometheus::Counter>& bytes_family_;
  prometheus::Counter& disk_errors_;
  prometheus::Gauge& disk_disabled_;
  std::mutex tiers_mu_;
  KvTiersStats last_tiers_;  // what the counters have counted so far
  // Disaggregation: leases held (prefill), pulls and their bytes and time (decode).
  prometheus::Gauge& kv_leases_;
  prometheus::Counter& kv_leases_expired_;
  prometheus::Family<prometheus::Counter>& kv_pulls_family_;
  prometheus::Counter& kv_pulls_ok_;
  prometheus::Counter& kv_pulls_recomputed_;
  prometheus::Counter& kv_pulled_bytes_;
  prometheus::Counter& kv_pull_seconds_;
  EngineStats last_;  // The engine's counters as the counters above have counted them.
  prometheus::Gauge& sim_expected_;
  prometheus::Gauge& sim_actual_;
  prometheus::Histogram& ttft_;
  prometheus::Histogram& duration_;
  prometheus::Gauge& kv_event_subscribers_;
  prometheus::Counter& kv_events_;
  prometheus::Counter& kv_snapshots_;
};

}  // namespace tandem::worker
