// The figures of a run computed from recorded timestamps: TTFT, ITL, TPOT, E2E, percentiles,
// throughput, goodput and the cached-prompt fraction.
#include "cli/bench/metrics.h"

#include <gtest/gtest.h>

namespace tandem::bench {
namespace {

RequestRecord Completed(std::vector<double> content_s, double end_s, int64_t output_tokens) {
  RequestRecord r;
  r.sent = true;
  r.content_s = std::move(content_s);
  r.end_s = end_s;
  r.output_tokens = output_tokens;
  r.prompt_tokens = 100;
  return r;
}

TEST(MetricsTest, TimingsOfOneRequest) {
  // First text at 50 ms, then every 20 ms; 5 tokens; the stream ends at 140 ms.
  const RequestTimings t = ComputeTimings(Completed({0.05, 0.07, 0.09, 0.11, 0.13}, 0.14, 5));
  EXPECT_DOUBLE_EQ(*t.ttft_s, 0.05);
  ASSERT_EQ(t.itl_s.size(), 4u);
  for (double gap : t.itl_s) EXPECT_NEAR(gap, 0.02, 1e-12);
  EXPECT_NEAR(*t.tpot_s, (0.14 - 0.05) / 4, 1e-12);  // The first token is excluded.
  EXPECT_DOUBLE_EQ(t.e2e_s, 0.14);
}

TEST(MetricsTest, TpotCountsUsageTokensNotChunks) {
  // Two chunks carrying 4 tokens each (the server batched them).
  const RequestTimings t = ComputeTimings(Completed({0.1, 0.3}, 0.3, 8));
  EXPECT_NEAR(*t.tpot_s, 0.2 / 7, 1e-12);
  EXPECT_FALSE(ComputeTimings(Completed({0.1}, 0.1, 1)).tpot_s);
  EXPECT_FALSE(ComputeTimings(Completed({}, 0.1, 0)).ttft_s);
}

TEST(MetricsTest, PercentilesInterpolateLikeNumpy) {
  const LatencyStats s = Summarize({4, 1, 3, 2, 5, 6, 7, 8, 9, 10});
  EXPECT_EQ(s.count, 10u);
  EXPECT_DOUBLE_EQ(*s.mean, 5.5);
  EXPECT_DOUBLE_EQ(*s.p50, 5.5);  // numpy.percentile(range(1, 11), 50)
  EXPECT_DOUBLE_EQ(*s.p90, 9.1);  // ... 90
  EXPECT_NEAR(*s.p99, 9.91, 1e-12);
  EXPECT_FALSE(Summarize({}).mean);
  EXPECT_DOUBLE_EQ(*Summarize({3}).p99, 3);
}

TEST(MetricsTest, ParseSloAcceptsAnySubsetAndNamesBadItems) {
  auto slo = ParseSlo("tpot:50,ttft:200.5");
  ASSERT_TRUE(slo.ok()) << slo.status();
  EXPECT_DOUBLE_EQ(*slo->ttft_ms, 200.5);
  EXPECT_DOUBLE_EQ(*slo->tpot_ms, 50);
  EXPECT_FALSE(slo->e2e_ms);
  for (const char* bad : {"", "ttft", "ttft:", "ttft:-1", "ttft:abc", "latency:5", "ttft:5,"}) {
    auto s = ParseSlo(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.status().message().find("--goodput"), std::string::npos);
  }
}

TEST(MetricsTest, SummaryCountsThroughputGoodputAndErrors) {
  std::vector<RequestRecord> records;
  records.push_back(Completed({0.1, 0.2}, 0.2, 2));    // TTFT 100, TPOT 100.
  records.push_back(Completed({0.5, 0.51}, 0.51, 2));  // TTFT 500: misses the TTFT SLO.
  records.push_back(Completed({0.1, 0.4}, 0.4, 2));    // TPOT 300: misses the TPOT SLO.
  records.push_back(Completed({0.05}, 0.05, 1));       // No TPOT: meets it.
  RequestRecord failed;
  failed.sent = true;
  failed.error_kind = "http_5xx:500";
  records.push_back(failed);
  failed.error_kind = "connect";
  records.push_back(failed);
  records.push_back(failed);
  RequestRecord cancelled;
  cancelled.sent = true;
  cancelled.error_kind = "cancelled";
  records.push_back(cancelled);
  records.push_back(RequestRecord());  // Never sent.

  SloOptions slo;
  slo.ttft_ms = 200;
  slo.tpot_ms = 150;
  const RunSummary s = SummarizeRun(records, 2.0, slo);
  EXPECT_EQ(s.completed, 4);
  EXPECT_EQ(s.failed, 3);
  EXPECT_EQ(s.cancelled, 1);
  EXPECT_EQ(s.not_sent, 1);
  EXPECT_DOUBLE_EQ(s.request_throughput, 2.0);
  EXPECT_DOUBLE_EQ(s.output_throughput, 7 / 2.0);
  EXPECT_DOUBLE_EQ(*s.goodput, 2 / 2.0);
  EXPECT_EQ(s.errors.at("connect"), 2);
  EXPECT_EQ(s.errors.at("http_5xx:500"), 1);
  EXPECT_EQ(s.ttft_ms.count, 4u);
  EXPECT_EQ(s.tpot_ms.count, 3u);
  EXPECT_EQ(s.itl_ms.count, 3u);
  EXPECT_FALSE(s.cached_prompt_tokens_fraction);  // Nobody reported cached tokens.
  EXPECT_FALSE(SummarizeRun(records, 2.0, SloOptions()).goodput);
}

TEST(MetricsTest, CachedFractionOverRequestsThatReportedIt) {
  std::vector<RequestRecord> records = {Completed({0.1}, 0.1, 1), Completed({0.1}, 0.1, 1),
                                        Completed({0.1}, 0.1, 1)};
  records[0].cached_tokens = 100;
  records[1].cached_tokens = 0;
  records[1].prompt_tokens = 300;
  const RunSummary s = SummarizeRun(records, 1.0, SloOptions());
  EXPECT_DOUBLE_EQ(*s.cached_prompt_tokens_fraction, 100.0 / 400.0);
}

}  // namespace
}  // namespace tandem::bench
