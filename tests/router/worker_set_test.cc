#include "router/worker_set.h"

#include <gtest/gtest.h>

namespace tandem::router {
namespace {

TEST(ParseEndpointsTest, SplitsOnCommas) {
  auto eps = ParseEndpoints("127.0.0.1:5000,localhost:6000", "--workers");
  ASSERT_TRUE(eps.ok()) << eps.status();
  EXPECT_EQ(*eps, (std::vector<std::string>{"127.0.0.1:5000", "localhost:6000"}));
}

TEST(ParseEndpointsTest, AcceptsBracketedIpv6) {
  auto eps = ParseEndpoints("[::1]:5000", "--workers");
  ASSERT_TRUE(eps.ok()) << eps.status();
  EXPECT_EQ(eps->at(0), "[::1]:5000");
}

TEST(ParseEndpointsTest, RejectsMalformedItemsNamingTheOption) {
  for (const char* bad : {"", "host", "host:", ":80", "host:0", "host:70000", "host:8x", "a:1,",
                          "a:1,,b:2", "a:1,a:1"}) {
    SCOPED_TRACE(bad);
    auto eps = ParseEndpoints(bad, "--workers");
    ASSERT_FALSE(eps.ok());
    EXPECT_EQ(eps.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(eps.status().message().find("--workers"), std::string::npos);
  }
}

TEST(WorkerSetTest, SelectsNothingWhenNoWorkerIsUp) {
  WorkerSet set;
  set.Add("a:1");
  auto policy = CreatePolicy("round-robin");
  ASSERT_TRUE(policy.ok());
  EXPECT_FALSE(set.SelectWorker(**policy).has_value());
  EXPECT_EQ(set.num_up(), 0u);
}

TEST(WorkerSetTest, SkipsWorkersThatAreDown) {
  WorkerSet set;
  const WorkerId a = set.Add("a:1");
  const WorkerId b = set.Add("b:1");
  set.SetUp(a, true);
  set.SetUp(b, true);
  set.SetUp(a, false);
  auto policy = *CreatePolicy("round-robin");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(set.SelectWorker(*policy), b);
  EXPECT_EQ(set.num_up(), 1u);
}

TEST(WorkerSetTest, CountsInFlightUntilReleased) {
  WorkerSet set;
  const WorkerId a = set.Add("a:1");
  set.SetUp(a, true);
  auto policy = *CreatePolicy("least-loaded");
  ASSERT_EQ(set.SelectWorker(*policy), a);
  ASSERT_EQ(set.SelectWorker(*policy), a);
  EXPECT_EQ(set.Snapshot()[0].in_flight, 2);
  EXPECT_EQ(set.Snapshot()[0].dispatched_since_report, 2);
  set.UpdateLoad(a, LoadReport{.active_requests = 2});
  EXPECT_EQ(set.Snapshot()[0].dispatched_since_report, 0);
  EXPECT_EQ(set.Snapshot()[0].PredictedRequests(), 2);
  set.Release(a);
  set.Release(a);
  set.Release(a);  // One too many is ignored.
  EXPECT_EQ(set.Snapshot()[0].in_flight, 0);
}

TEST(WorkerSetTest, GoingDownForgetsTheLoad) {
  WorkerSet set;
  const WorkerId a = set.Add("a:1");
  set.SetUp(a, true);
  set.UpdateLoad(a, LoadReport{.active_requests = 7});
  set.SetUp(a, false);
  EXPECT_EQ(set.Snapshot()[0].load.active_requests, 0);
}

TEST(WorkerSetTest, UnknownIdsAreIgnored) {
  WorkerSet set;
  set.SetUp(WorkerId(3), true);
  set.UpdateLoad(WorkerId(3), LoadReport{});
  set.Release(WorkerId(3));
  EXPECT_EQ(set.address(WorkerId(3)), "");
  EXPECT_EQ(set.size(), 0u);
}

}  // namespace
}  // namespace tandem::router
