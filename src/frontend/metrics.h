// The frontend's Prometheus metrics (names per ARCHITECTURE §4) and their text exposition for
// GET /metrics.
//
// Thread safety: prometheus-cpp metrics are thread-safe; every method may be called from any
// thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace tandem::frontend {

class FrontendMetrics {
 public:
  FrontendMetrics();
  FrontendMetrics(const FrontendMetrics&) = delete;
  FrontendMetrics& operator=(const FrontendMetrics&) = delete;

  // One finished HTTP request; `path` e.g. "/v1/chat/completions". Paths the server does not
  // serve are counted as endpoint="unknown", so clients cannot grow the series without bound.
  void CountRequest(std::string_view path, int status);
  void ObserveTimeToFirstToken(double seconds) { ttft_.Observe(seconds); }
  // From arrival until the worker first scheduled the request.
  void ObserveQueueTime(double seconds) { queue_time_.Observe(seconds); }
  // From arrival until the request ended (finished, failed or cut), for requests that reached a
  // worker.
  void ObserveRequestDuration(double seconds) { e2e_.Observe(seconds); }
  void ObserveInterTokenLatency(double seconds) { itl_.Observe(seconds); }
  void AddGeneratedTokens(double n) { generated_tokens_.Increment(n); }
  prometheus::Gauge& active_requests() { return active_requests_; }
  prometheus::Gauge& open_connections() { return open_connections_; }
  prometheus::Counter& refused_connections() { return refused_connections_; }
  // Mock workers' simulated time against real time, summed (ARCHITECTURE §3 "Engine": slip).
  void SetMockTimes(double expected_seconds, double actual_seconds);
  // Workers refused for differing from the cluster (model identity, block size).
  void SetRefusedWorkers(int n) { refused_workers_.Set(n); }
  // One routing decision, and the prompt blocks the chosen worker had cached.
  void CountRoutingDecision(std::string_view mode, int overlap_blocks);
  // How a request's prompt was prefilled: "remote" (a prefill worker, its KV pulled), "local"
  // (the decode or aggregated worker), "recomputed" (remote failed; the decode worker did it).
  void CountPrefill(std::string_view path);
  // The router's index and event streams, as of now (refreshed when /metrics is read).
  void SetRouterState(size_t indexed_blocks, uint64_t kv_event_lag, int64_t resubscriptions,
                      int64_t snapshots);

  // The Prometheus text format (version 0.0.4) of every metric.
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;  // Shared: prometheus-cpp's API hands it out so.
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Histogram& ttft_;
  prometheus::Histogram& itl_;
  prometheus::Histogram& queue_time_;
  prometheus::Histogram& e2e_;
  prometheus::Gauge& open_connections_;
  prometheus::Counter& refused_connections_;
  prometheus::Gauge& active_requests_;
  prometheus::Counter& generated_tokens_;
  prometheus::Family<prometheus::Gauge>& mock_seconds_;
  prometheus::Gauge& refused_workers_;
  prometheus::Family<prometheus::Counter>& decisions_;
  prometheus::Family<prometheus::Counter>& prefills_;
  prometheus::Histogram& overlap_blocks_;
  prometheus::Gauge& indexed_blocks_;
  prometheus::Gauge& kv_event_lag_;
  prometheus::Counter& resubscriptions_;
  prometheus::Counter& snapshots_;
};

}  // namespace tandem::frontend
