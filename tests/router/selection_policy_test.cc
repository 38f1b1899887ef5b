#include "router/selection_policy.h"

#include <gtest/gtest.h>

#include <vector>

#include "router/worker_set.h"

namespace tandem::router {
namespace {

WorkerState Worker(uint64_t id, int active, int blocks = 0) {
  WorkerState w;
  w.id = WorkerId(id);
  w.up = true;
  w.load.active_requests = active;
  w.load.active_blocks = blocks;
  return w;
}

TEST(SelectionPolicyTest, UnknownNameIsInvalidArgument) {
  auto p = CreatePolicy("kv-magic");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("least-loaded"), std::string::npos);
}

TEST(SelectionPolicyTest, RoundRobinCycles) {
  auto p = *CreatePolicy("round-robin");
  std::vector<WorkerState> ws = {Worker(0, 0), Worker(1, 0), Worker(2, 0)};
  std::vector<size_t> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(p->Select(ws));
  EXPECT_EQ(picks, (std::vector<size_t>{0, 1, 2, 0, 1, 2}));
}

TEST(SelectionPolicyTest, RoundRobinStaysFairWhenAWorkerLeaves) {
  auto p = *CreatePolicy("round-robin");
  std::vector<WorkerState> ws = {Worker(0, 0), Worker(1, 0), Worker(2, 0)};
  EXPECT_EQ(p->Select(ws), 0u);
  EXPECT_EQ(p->Select(ws), 1u);
  // Worker 2 left: after 1 comes 0 again; then worker 2 is back and comes after 1.
  std::vector<WorkerState> two = {Worker(0, 0), Worker(1, 0)};
  EXPECT_EQ(two[p->Select(two)].id, WorkerId(0));
  EXPECT_EQ(ws[p->Select(ws)].id, WorkerId(1));
  EXPECT_EQ(ws[p->Select(ws)].id, WorkerId(2));
}

TEST(SelectionPolicyTest, LeastLoadedPicksFewestRequests) {
  auto p = *CreatePolicy("least-loaded");
  std::vector<WorkerState> ws = {Worker(0, 5), Worker(1, 2), Worker(2, 9)};
  EXPECT_EQ(p->Select(ws), 1u);
  EXPECT_EQ(p->Select(ws), 1u);
}

TEST(SelectionPolicyTest, LeastLoadedBreaksTiesOnBlocksThenRotates) {
  auto p = *CreatePolicy("least-loaded");
  std::vector<WorkerState> ws = {Worker(0, 1, 50), Worker(1, 1, 10), Worker(2, 1, 10)};
  EXPECT_EQ(p->Select(ws), 1u);
  EXPECT_EQ(p->Select(ws), 2u);
  EXPECT_EQ(p->Select(ws), 1u);
}

TEST(SelectionPolicyTest, LeastLoadedCountsDispatchesSinceTheLastReport) {
  WorkerSet set;
  const WorkerId a = set.Add("a:1");
  const WorkerId b = set.Add("b:1");
  set.SetUp(a, true);
  set.SetUp(b, true);
  auto p = *CreatePolicy("least-loaded");
  // No reports at all: the predicted load alone spreads requests evenly.
  int on_a = 0;
  for (int i = 0; i < 10; ++i) on_a += set.SelectWorker(*p) == a ? 1 : 0;
  EXPECT_EQ(on_a, 5);
  // a reports it is busy: new requests go to b until b's prediction catches up.
  set.UpdateLoad(a, LoadReport{.active_requests = 20});
  set.UpdateLoad(b, LoadReport{.active_requests = 5});
  for (int i = 0; i < 10; ++i) EXPECT_EQ(set.SelectWorker(*p), b);
}

TEST(SelectionPolicyTest, PredictionNeverBelowOwnInFlight) {
  WorkerState w = Worker(0, 0);
  w.in_flight = 3;
  EXPECT_EQ(w.PredictedRequests(), 3);
  w.load.active_requests = 2;
  w.load.waiting_requests = 4;
  EXPECT_EQ(w.PredictedRequests(), 6);
}

}  // namespace
}  // namespace tandem::router
