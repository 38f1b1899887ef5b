#include "frontend/metrics.h"

#include <prometheus/text_serializer.h>

#include <utility>

namespace tandem::frontend {

namespace {

const prometheus::Histogram::BucketBoundaries& TtftBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& ItlBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& DurationBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0};
  return *b;
}

// The endpoints the server answers; anything else is "unknown".
std::string_view EndpointLabel(std::string_view path) {
  for (std::string_view known :
       {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"}) {
    if (path == known) return known;
  }
  if (path.starts_with("/v1/models/")) return "/v1/models/{id}";
  return "unknown";
}

}  // namespace

FrontendMetrics::FrontendMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("tandem_frontend_requests_total")
                    .Help("Requests answered, by endpoint and HTTP status")
                    .Register(*registry_)),
      ttft_(prometheus::BuildHistogram()
                .Name("tandem_frontend_time_to_first_token_seconds")
                .Help("Time from a request's arrival to its first generated token")
                .Register(*registry_)
                .Add({}, TtftBuckets())),
      itl_(prometheus::BuildHistogram()
               .Name("tandem_frontend_inter_token_latency_seconds")
               .Help("Time between successive generated tokens of a request")
               .Register(*registry_)
               .Add({}, ItlBuckets())),
      queue_time_(prometheus::BuildHistogram()
                      .Name("tandem_frontend_request_queue_time_seconds")
                      .Help("Time from a request's arrival until its worker first scheduled it")
                      .Register(*registry_)
                      .Add({}, TtftBuckets())),
      e2e_(prometheus::BuildHistogram()
               .Name("tandem_frontend_request_duration_seconds")
               .Help("Time from a request's arrival until it ended (end-to-end latency)")
               .Register(*registry_)
               .Add({}, DurationBuckets())),
      open_connections_(prometheus::BuildGauge()
                            .Name("tandem_frontend_http_connections")
                            .Help("HTTP connections open")
                            .Register(*registry_)
                            .Add({})),
      refused_connections_(prometheus::BuildCounter()
                               .Name("tandem_frontend_http_connections_refused_total")
                               .Help("HTTP connections refused at --max-connections")
                               .Register(*registry_)
                               .Add({})),
      active_requests_(prometheus::BuildGauge()
                           .Name("tandem_frontend_active_requests")
                           .Help("Generation requests in progress")
                           .Register(*registry_)
                           .Add({})),
      generated_tokens_(prometheus::BuildCounter()
                            .Name("tandem_frontend_generated_tokens_total")
                            .Help("Tokens generated for clients")
                            .Register(*registry_)
                            .Add({})),
      mock_seconds_(prometheus::BuildGauge()
                        .Name("tandem_frontend_mock_step_seconds")
                        .Help("Mock workers, summed: predicted step time (kind=expected) and the "
                              "real time the steps took (kind=actual); the excess is slip")
                        .Register(*registry_)),
      refused_workers_(prometheus::BuildGauge()
                           .Name("tandem_frontend_workers_refused")
                           .Help("Workers kept out of routing: their model identity or block "
                                 "size differs from the cluster's")
                           .Register(*registry_)
                           .Add({})),
      decisions_(prometheus::BuildCounter()
                     .Name("tandem_frontend_router_decisions_total")
                     .Help("Routing decisions, by router mode (a request prefilled on a "
                           "prefill worker makes two: its decode and its prefill worker)")
                     .Register(*registry_)),
      prefills_(prometheus::BuildCounter()
                    .Name("tandem_frontend_prefill_total")
                    .Help("Requests by how their prompt was prefilled: remote (a prefill worker, "
                          "its KV pulled), local (the worker that decodes), recomputed (the "
                          "remote prefill failed and the decode worker did it)")
                    .Register(*registry_)),
      overlap_blocks_(
          prometheus::BuildHistogram()
              .Name("tandem_frontend_router_overlap_blocks")
              .Help("Prompt blocks the chosen worker had cached, per routing decision")
              .Register(*registry_)
              .Add({}, prometheus::Histogram::BucketBoundaries{0, 1, 2, 4, 8, 16, 32, 64, 128, 256,
                                                               512, 1024, 2048, 4096, 8192})),
      indexed_blocks_(prometheus::BuildGauge()
                          .Name("tandem_frontend_router_indexed_blocks")
                          .Help("Distinct KV blocks in the router's index (held by any worker)")
                          .Register(*registry_)
                          .Add({})),
      kv_event_lag_(prometheus::BuildGauge()
                        .Name("tandem_frontend_router_kv_event_lag")
                        .Help("KV events the workers reported and the router has not applied")
                        .Register(*registry_)
                        .Add({})),
      resubscriptions_(prometheus::BuildCounter()
                           .Name("tandem_frontend_router_kv_resubscriptions_total")
                           .Help("KV event streams started again after a gap, a malformed "
                                 "message or a broken stream")
                           .Register(*registry_)
                           .Add({})),
      snapshots_(prometheus::BuildCounter()
                     .Name("tandem_frontend_router_kv_snapshots_total")
                     .Help("Workers' KV indexes rebuilt whole from a snapshot")
                     .Register(*registry_)
                     .Add({})) {}

void FrontendMetrics::CountRoutingDecision(std::string_view mode, int overlap_blocks) {
  decisions_.Add({{"mode", std::string(mode)}}).Increment();
  overlap_blocks_.Observe(overlap_blocks);
}

void FrontendMetrics::CountPrefill(std::string_view path) {
  prefills_.Add({{"path", std::string(path)}}).Increment();
}

void FrontendMetrics::SetRouterState(size_t indexed_blocks, uint64_t kv_event_lag,
                                     int64_t resubscriptions, int64_t snapshots) {
  indexed_blocks_.Set(static_cast<double>(indexed_blocks));
  kv_event_lag_.Set(static_cast<double>(kv_event_lag));
  // Counters follow the pool's totals.
  for (auto [counter, total] :
       {std::pair{&resubscriptions_, resubscriptions}, std::pair{&snapshots_, snapshots}}) {
    const double seen = counter->Value();
    if (static_cast<double>(total) > seen) counter->Increment(static_cast<double>(total) - seen);
  }
}

void FrontendMetrics::SetMockTimes(double expected_seconds, double actual_seconds) {
  mock_seconds_.Add({{"kind", "expected"}}).Set(expected_seconds);
  mock_seconds_.Add({{"kind", "actual"}}).Set(actual_seconds);
}

void FrontendMetrics::CountRequest(std::string_view path, int status) {
  requests_
      .Add({{"endpoint", std::string(EndpointLabel(path))}, {"status", std::to_string(status)}})
      .Increment();
}

std::string FrontendMetrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace tandem::frontend
