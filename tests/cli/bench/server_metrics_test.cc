// Issue 15: the mock engine's slip, read from a tandem frontend's /metrics before and after a run.
#include <gtest/gtest.h>

#include "cli/bench/server_metrics.h"

namespace tandem::bench {
namespace {

constexpr char kMetrics[] = R"(# HELP tandem_frontend_mock_step_seconds Mock workers
# TYPE tandem_frontend_mock_step_seconds gauge
tandem_frontend_mock_step_seconds{kind="actual"} 10.5
tandem_frontend_mock_step_seconds{kind="expected"} 10.25
tandem_frontend_active_requests 3
)";

TEST(ServerMetricsTest, ReadsTheMockFiguresOfATandemFrontend) {
  const auto times = ParseMockTimes(kMetrics);
  ASSERT_TRUE(times.has_value());
  EXPECT_DOUBLE_EQ(times->expected_seconds, 10.25);
  EXPECT_DOUBLE_EQ(times->actual_seconds, 10.5);
}

TEST(ServerMetricsTest, OtherServersHaveNoMockFigures) {
  EXPECT_FALSE(ParseMockTimes("").has_value());
  EXPECT_FALSE(ParseMockTimes("vllm:num_requests_running 3\n").has_value());
  // One of the two alone, or a value that is not a number, is not a reading.
  EXPECT_FALSE(ParseMockTimes("tandem_frontend_mock_step_seconds{kind=\"expected\"} 1\n"));
  EXPECT_FALSE(
      ParseMockTimes("tandem_frontend_mock_step_seconds{kind=\"expected\"} x\n"
                     "tandem_frontend_mock_step_seconds{kind=\"actual\"} 1\n"));
}

TEST(ServerMetricsTest, SlipIsTheRunsExcessOverSimulatedTime) {
  const MockTimes before{.expected_seconds = 100, .actual_seconds = 101};
  // 50 s simulated during the run took 51 s: 2% slip, valid.
  auto slip = SlipBetween(before, {.expected_seconds = 150, .actual_seconds = 152});
  ASSERT_TRUE(slip.has_value());
  EXPECT_DOUBLE_EQ(slip->expected_seconds, 50);
  EXPECT_DOUBLE_EQ(slip->actual_seconds, 51);
  EXPECT_NEAR(slip->slip_fraction, 0.02, 1e-12);
  EXPECT_TRUE(slip->valid);
  // 55.5 s: 11% slip, the run is marked invalid.
  slip = SlipBetween(before, {.expected_seconds = 150, .actual_seconds = 156.5});
  ASSERT_TRUE(slip.has_value());
  EXPECT_FALSE(slip->valid);
  // Nothing simulated, or counters that went back (a worker restarted): no figure.
  EXPECT_FALSE(SlipBetween(before, before).has_value());
  EXPECT_FALSE(SlipBetween(before, {.expected_seconds = 10, .actual_seconds = 11}).has_value());
}

}  // namespace
}  // namespace tandem::bench
