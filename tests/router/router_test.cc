#include "router/router.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

namespace tandem::router {
namespace {

std::unique_ptr<Router> MakeRouter(RouterOptions options = {}) {
  if (options.seed == 0) options.seed = 7;
  auto router = Router::Create(options);
  EXPECT_TRUE(router.ok()) << router.status();
  return std::move(router).value();
}

WorkerId AddUp(Router& router, const std::string& name) {
  const WorkerId id = *router.AddWorker(name);
  router.SetUp(id, true);
  return id;
}

KvEventRecord Stored(uint64_t id, const std::vector<BlockHash>& hashes,
                     KvTier tier = KvTier::kDevice) {
  return KvEventRecord{
      .id = id, .kind = KvEvent::Kind::kStored, .tier = tier, .block_hashes = hashes};
}

TEST(RouterModeTest, ParsesEveryModeAndNamesThemOnError) {
  for (const char* name : {"kv", "round-robin", "random", "least-loaded"}) {
    auto mode = ParseRouterMode(name);
    ASSERT_TRUE(mode.ok()) << name;
    EXPECT_EQ(RouterModeName(*mode), name);
  }
  auto bad = ParseRouterMode("fastest");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("least-loaded"), std::string::npos);
}

TEST(RouterOptionsTest, RefusesOutOfRangeWeightsNamingTheFlag) {
  for (auto [options, flag] :
       {std::pair{RouterOptions{.overlap_weight = -1}, "--router-overlap-weight"},
        std::pair{RouterOptions{.host_weight = 1.5}, "--router-host-weight"},
        std::pair{RouterOptions{.temperature = -0.1}, "--router-temperature"},
        std::pair{RouterOptions{.block_size = 0}, "block size"}}) {
    auto router = Router::Create(options);
    ASSERT_FALSE(router.ok()) << flag;
    EXPECT_NE(router.status().message().find(flag), std::string::npos) << router.status();
  }
}

TEST(RouterTest, RoutesNowhereWhenNoWorkerIsUp) {
  auto router = MakeRouter();
  const WorkerId a = *router->AddWorker("a:1");
  EXPECT_FALSE(router->Route({}).has_value());
  router->SetUp(a, true);
  router->SetUp(a, false);
  EXPECT_FALSE(router->Route({}).has_value());
}

// Disaggregation: a request's prefill goes only to prefill workers, everything else only to the
// workers that decode; the plan says what the prefill worker had queued before.
TEST(RouterTest, RolesKeepPrefillsAndDecodesApart) {
  auto router = MakeRouter();
  const WorkerId p = AddUp(*router, "p:1");
  const WorkerId d = AddUp(*router, "d:1");
  const WorkerId a = AddUp(*router, "a:1");
  router->SetRole(p, WorkerRole::kPrefill);
  router->SetRole(d, WorkerRole::kDecode);
  EXPECT_EQ(router->num_prefill_up(), 1u);
  std::vector<RoutePlan> plans;
  for (int i = 0; i < 8; ++i) {
    std::optional<RoutePlan> decode = router->Route({.prompt_tokens = 64});
    ASSERT_TRUE(decode.has_value());
    EXPECT_TRUE(decode->worker() == d || decode->worker() == a);
    std::optional<RoutePlan> prefill = router->Route({.prompt_tokens = 64, .prefill = true});
    ASSERT_TRUE(prefill.has_value());
    EXPECT_EQ(prefill->worker(), p);
    EXPECT_EQ(prefill->queued_prefill_tokens(), 64 * i) << "the prefills routed before it";
    plans.push_back(std::move(*decode));
    plans.push_back(std::move(*prefill));
  }
  // Without a prefill worker up, a prefill has nowhere to go (the frontend then prefills on the
  // decode worker).
  router->SetUp(p, false);
  EXPECT_EQ(router->num_prefill_up(), 0u);
  EXPECT_FALSE(router->Route({.prompt_tokens = 64, .prefill = true}).has_value());
  EXPECT_TRUE(router->Route({.prompt_tokens = 64}).has_value());
}

TEST(RouterTest, RefusesADuplicateName) {
  auto router = MakeRouter();
  ASSERT_TRUE(router->AddWorker("a:1").ok());
  EXPECT_EQ(router->AddWorker("a:1").status().code(), StatusCode::kAlreadyExists);
}

TEST(RouterTest, KvModeSendsARequestToTheWorkerHoldingItsPrefix) {
  auto router = MakeRouter();
  const WorkerId a = AddUp(*router, "a:1");
  const WorkerId b = AddUp(*router, "b:1");
  const std::vector<BlockHash> prompt = {1, 2, 3, 4};
  ASSERT_TRUE(router->ApplyKvEvent(b, Stored(1, {1, 2, 3})).ok());
  for (int i = 0; i < 3; ++i) {
    auto plan = router->Route({.block_hashes = prompt, .prompt_tokens = 64});
    ASSERT_TRUE(plan);
    EXPECT_EQ(plan->worker(), b);
    EXPECT_EQ(plan->overlap().device_blocks, 3);
  }
  (void)a;
}

TEST(RouterTest, KvCostFollowsTheArchitectureFormula) {
  // B = 16, isl = 160 (10 blocks). a: 6 device blocks cached, 32 queued prefill tokens, 100
  // active blocks. b: nothing cached, nothing queued, 96 active blocks.
  //   cost[a] = (32/16 + 10 − 6) + (100 + 10 − 6) = 6 + 104 = 110
  //   cost[b] = (0 + 10 − 0)     + (96 + 10 − 0)  = 10 + 106 = 116
  auto router = MakeRouter();
  const WorkerId a = AddUp(*router, "a:1");
  const WorkerId b = AddUp(*router, "b:1");
  router->UpdateLoad(a, LoadReport{.active_blocks = 100, .queued_prefill_tokens = 32});
  router->UpdateLoad(b, LoadReport{.active_blocks = 96});
  std::vector<BlockHash> prompt(10);
  for (int i = 0; i < 10; ++i) prompt[i] = 500 + i;
  ASSERT_TRUE(router->ApplyKvEvent(a, Stored(1, {prompt.begin(), prompt.begin() + 6})).ok());
  auto plan = router->Route({.block_hashes = prompt, .prompt_tokens = 160});
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->worker(), a);
  EXPECT_DOUBLE_EQ(plan->cost(), 110.0);
  plan->Release();

  // Twice the weight on prefill does not change the winner; b's decode load well below a's does.
  router->UpdateLoad(b, LoadReport{.active_blocks = 80});
  plan = router->Route({.block_hashes = prompt, .prompt_tokens = 160});
  EXPECT_EQ(plan->worker(), b);
  EXPECT_DOUBLE_EQ(plan->cost(), 100.0);
}

TEST(RouterTest, HostAndDiskHitsCountLessThanDeviceHits) {
  // Same prefix of 8 blocks: on a's device, on b's host tier, on c's disk tier. With a loaded
  // by 4 blocks more than the others, the device hit still wins over the host hit
  // (8 vs 6 blocks of prefill saved), and the host hit over the disk hit.
  auto router = MakeRouter();
  const WorkerId a = AddUp(*router, "a:1");
  const WorkerId b = AddUp(*router, "b:1");
  const WorkerId c = AddUp(*router, "c:1");
  std::vector<BlockHash> prompt(8);
  for (int i = 0; i < 8; ++i) prompt[i] = 900 + i;
  ASSERT_TRUE(router->ApplyKvEvent(a, Stored(1, prompt, KvTier::kDevice)).ok());
  ASSERT_TRUE(router->ApplyKvEvent(b, Stored(1, prompt, KvTier::kHost)).ok());
  ASSERT_TRUE(router->ApplyKvEvent(c, Stored(1, prompt, KvTier::kDisk)).ok());
  // cost a = (8 − 8) + (L + 8 − 8); b = (8 − 6) + (8 + 8); c = (8 − 2) + (8 + 8).
  router->UpdateLoad(a, LoadReport{.active_blocks = 17});
  router->UpdateLoad(b, LoadReport{.active_blocks = 8});
  router->UpdateLoad(c, LoadReport{.active_blocks = 8});
  auto plan = router->Route({.block_hashes = prompt, .prompt_tokens = 128});
  EXPECT_EQ(plan->worker(), a);  // 17 < 18
  EXPECT_EQ(plan->overlap().device_blocks, 8);
  plan->Release();
  router->UpdateLoad(a, LoadReport{.active_blocks = 19});  // 19 > 18: b
  plan = router->Route({.block_hashes = prompt, .prompt_tokens = 128});
  EXPECT_EQ(plan->worker(), b);
  EXPECT_EQ(plan->overlap().host_blocks, 8);
}

TEST(RouterTest, PredictedLoadSpreadsABurstBetweenReports) {
  // No reports yet: each routed request counts at once, so a burst of identical uncached
  // requests alternates instead of piling on one worker.
  auto router = MakeRouter();
  const WorkerId a = AddUp(*router, "a:1");
  const WorkerId b = AddUp(*router, "b:1");
  std::map<WorkerId, int> count;
  std::vector<RoutePlan> plans;
  for (int i = 0; i < 10; ++i) {
    auto plan = router->Route({.prompt_tokens = 256});
    count[plan->worker()]++;
    plans.push_back(std::move(*plan));
  }
  EXPECT_EQ(count[a], 5);
  EXPECT_EQ(count[b], 5);
  auto views = router->Snapshot();
  EXPECT_EQ(views[0].in_flight, 5);
  EXPECT_EQ(views[0].predicted_queued_prefill_tokens, 5 * 256);
  EXPECT_EQ(views[0].predicted_active_blocks, 5 * 16);
  // Prefilled: no longer queued; released: no longer active or in flight.
  for (RoutePlan& p : plans) p.PrefillDone();
  views = router->Snapshot();
  EXPECT_EQ(views[0].predicted_queued_prefill_tokens, 0);
  plans.clear();
  views = router->Snapshot();
  EXPECT_EQ(views[0].in_flight, 0);
  EXPECT_EQ(views[0].predicted_active_blocks, 0);
  EXPECT_EQ(views[1].predicted_requests, 0);
}

TEST(RouterTest, AReportReplacesThePrediction) {
  auto router = MakeRouter();
  const WorkerId a = AddUp(*router, "a:1");
  auto plan = router->Route({.prompt_tokens = 32});
  router->UpdateLoad(a, LoadReport{.active_requests = 1, .active_blocks = 2});
  auto views = router->Snapshot();
  EXPECT_EQ(views[0].predicted_active_blocks, 2);
  EXPECT_EQ(views[0].predicted_requests, 1);
  // Its own request is a floor under the queued prefill until it is prefilled.
  EXPECT_EQ(views[0].predicted_queued_prefill_tokens, 32);
  plan->Release();
  views = router->Snapshot();
  EXPECT_EQ(views[0].predicted_active_blocks, 0);  // 2 reported − 2 released
}

TEST(RouterTest, TemperatureSamplesBySoftmaxOfNormalizedCost) {
  // a holds the prompt, b does not: cost a < cost b. At T = 0 a always wins; at a high
  // temperature both are drawn about equally; at T = 1, b has weight e^-1 against a's 1.
  std::vector<BlockHash> prompt(32);
  for (int i = 0; i < 32; ++i) prompt[i] = 7000 + i;
  auto draws = [&](double temperature) {
    auto router = MakeRouter(RouterOptions{.temperature = temperature, .seed = 42});
    const WorkerId a = AddUp(*router, "a:1");
    AddUp(*router, "b:1");
    EXPECT_TRUE(router->ApplyKvEvent(a, Stored(1, prompt)).ok());
    int to_a = 0;
    for (int i = 0; i < 4000; ++i) {
      auto plan = router->Route({.block_hashes = prompt, .prompt_tokens = 512});
      if (plan->worker() == a) ++to_a;
    }  // Each plan is released at once: the load stays the same.
    return to_a / 4000.0;
  };
  EXPECT_EQ(draws(0), 1.0);
  EXPECT_NEAR(draws(1.0), 1.0 / (1.0 + std::exp(-1.0)), 0.03);
  EXPECT_NEAR(draws(1000.0), 0.5, 0.03);
  // Seeded: the same draws again.
  EXPECT_EQ(draws(1.0), draws(1.0));
}

TEST(RouterTest, RoundRobinCyclesByIdAndSkipsWorkersDown) {
  auto router = MakeRouter(RouterOptions{.mode = RouterMode::kRoundRobin});
  const WorkerId a = AddUp(*router, "a:1");
  const WorkerId b = AddUp(*router, "b:1");
  const WorkerId c = AddUp(*router, "c:1");
  std::vector<WorkerId> got;
  for (int i = 0; i < 4; ++i) got.push_back(router->Route({})->worker());
  EXPECT_EQ(got, (std::vector<WorkerId>{a, b, c, a}));
  router->SetUp(b, false);
  EXPECT_EQ(router->Route({})->worker(), c);
  EXPECT_EQ(router->Route({})->worker(), a);
}

TEST(RouterTest, LeastLoadedTakesTheFewestPredictedRequests) {
  auto router = MakeRouter(RouterOptions{.mode = RouterMode::kLeastLoaded});
  const WorkerId a = AddUp(*router, "a:1");
  const WorkerId b = AddUp(*router, "b:1");
  router->UpdateLoad(a, LoadReport{.active_requests = 3});
  router->UpdateLoad(b, LoadReport{.active_requests = 1});
  auto p1 = router->Route({});
  auto p2 = router->Route({});
  EXPECT_EQ(p1->worker(), b);
  EXPECT_EQ(p2->worker(), b);  // 2 < 3
  auto p3 = router->Route({});
  auto p4 = router->Route({});
  EXPECT_NE(p3->worker(), p4->worker());  // 3 = 3: both get one
}

TEST(RouterTest, RandomModeUsesEveryWorker) {
  auto router = MakeRouter(RouterOptions{.mode = RouterMode::kRandom, .seed = 3});
  AddUp(*router, "a:1");
  AddUp(*router, "b:1");
  AddUp(*router, "c:1");
  std::map<WorkerId, int> count;
  for (int i = 0; i < 300; ++i) count[router->Route({})->worker()]++;
  ASSERT_EQ(count.size(), 3u);
  for (auto [id, n] : count) EXPECT_GT(n, 60);
}

TEST(RouterTest, AnEventOutOfOrderIsRefusedAndChangesNothing) {
  auto router = MakeRouter();
  const WorkerId a = AddUp(*router, "a:1");
  ASSERT_TRUE(router->ApplyKvEvent(a, Stored(1, {1})).ok());
  Status gap = router->ApplyKvEvent(a, Stored(3, {2}));
  EXPECT_EQ(gap.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(router->ApplyKvEvent(a, Stored(1, {2})).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(router->NextKvEventId(a), 2u);
  EXPECT_EQ(router->indexed_blocks(), 1u);
  // Malformed: a tier out of range, a kind out of range.
  KvEventRecord bad = Stored(2, {2});
  bad.tier = static_cast<KvTier>(9);
  EXPECT_EQ(router->ApplyKvEvent(a, bad).code(), StatusCode::kInvalidArgument);
  bad = Stored(2, {2});
  bad.kind = static_cast<KvEvent::Kind>(77);
  EXPECT_EQ(router->ApplyKvEvent(a, bad).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(router->indexed_blocks(), 1u);
  EXPECT_TRUE(router->ApplyKvEvent(a, Stored(2, {2})).ok());
}

TEST(RouterTest, ASnapshotReplacesWhatTheWorkerHeld) {
  auto router = MakeRouter();
  const WorkerId a = AddUp(*router, "a:1");
  const WorkerId b = AddUp(*router, "b:1");
  ASSERT_TRUE(router->ApplyKvEvent(a, Stored(1, {1, 2, 3})).ok());
  ASSERT_TRUE(router->ApplyKvEvent(b, Stored(1, {1, 2})).ok());
  router->BeginKvSnapshot(a);
  // Events cannot interleave with a snapshot.
  EXPECT_FALSE(router->ApplyKvEvent(a, Stored(2, {9})).ok());
  const std::vector<BlockHash> device = {5, 6}, host = {1};
  ASSERT_TRUE(router->ApplyKvSnapshotPart(a, KvTier::kDevice, device).ok());
  ASSERT_TRUE(router->ApplyKvSnapshotPart(a, KvTier::kHost, host).ok());
  router->EndKvSnapshot(a, 40);
  EXPECT_EQ(router->NextKvEventId(a), 41u);
  EXPECT_FALSE(router->ApplyKvSnapshotPart(a, KvTier::kDevice, device).ok());
  auto plan = router->Route({.block_hashes = std::vector<BlockHash>{1, 2, 3}, .prompt_tokens = 48});
  EXPECT_EQ(plan->worker(), b);  // a holds only block 1 now, on the host.
  EXPECT_EQ(router->Snapshot()[0].indexed_blocks, 3u);
  router->AbandonKvSnapshot(a);  // Outside a snapshot: nothing.
  EXPECT_EQ(router->NextKvEventId(a), 41u);

  // A snapshot cut short leaves nothing half-applied: the worker starts again from event 1.
  router->BeginKvSnapshot(a);
  ASSERT_TRUE(router->ApplyKvSnapshotPart(a, KvTier::kDevice, device).ok());
  router->AbandonKvSnapshot(a);
  EXPECT_EQ(router->NextKvEventId(a), 1u);
  EXPECT_EQ(router->Snapshot()[0].indexed_blocks, 0u);
  EXPECT_TRUE(router->ApplyKvEvent(a, Stored(1, {1})).ok());
}

TEST(RouterTest, ACLearedEventAndGoingDownForgetTheWorkersBlocks) {
  auto router = MakeRouter();
  const WorkerId a = AddUp(*router, "a:1");
  ASSERT_TRUE(router->ApplyKvEvent(a, Stored(1, {1, 2, 3})).ok());
  ASSERT_TRUE(
      router->ApplyKvEvent(a, KvEventRecord{.id = 2, .kind = KvEvent::Kind::kCleared}).ok());
  EXPECT_EQ(router->indexed_blocks(), 0u);
  ASSERT_TRUE(router->ApplyKvEvent(a, Stored(3, {1})).ok());
  router->UpdateLoad(a, LoadReport{.kv_events_last_id = 10});
  EXPECT_EQ(router->kv_event_lag(), 7u);
  router->SetUp(a, false);
  EXPECT_EQ(router->indexed_blocks(), 0u);
  EXPECT_EQ(router->NextKvEventId(a), 1u);  // Rebuilt from the start when it returns.
  EXPECT_EQ(router->kv_event_lag(), 0u);
  // What its stream still delivers while it is down is moot: ignored, no error.
  EXPECT_TRUE(router->ApplyKvEvent(a, Stored(4, {9})).ok());
  EXPECT_EQ(router->indexed_blocks(), 0u);
  router->SetUp(a, true);
  EXPECT_TRUE(router->ApplyKvEvent(a, Stored(1, {9})).ok());
  EXPECT_EQ(router->indexed_blocks(), 1u);
}

TEST(RouterTest, RemovedWorkersLeaveRoutingAndTheirPlansReleaseHarmlessly) {
  auto router = MakeRouter();
  const WorkerId a = AddUp(*router, "a:1");
  const WorkerId b = AddUp(*router, "b:1");
  ASSERT_TRUE(router->ApplyKvEvent(a, Stored(1, {1, 2})).ok());
  auto plan = router->Route({.block_hashes = std::vector<BlockHash>{1, 2}, .prompt_tokens = 32});
  EXPECT_EQ(plan->worker(), a);
  router->RemoveWorker(a);
  EXPECT_EQ(router->num_workers(), 1u);
  EXPECT_EQ(router->indexed_blocks(), 0u);
  EXPECT_TRUE(router->ApplyKvEvent(a, Stored(2, {3})).ok());  // Ignored.
  EXPECT_EQ(router->indexed_blocks(), 0u);
  plan->Release();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(router->Route({})->worker(), b);
  // A name may come back: as a new worker with a new id.
  auto again = router->AddWorker("a:1");
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, a);
}

TEST(RoutePlanTest, MovesAndReleasesOnce) {
  auto router = MakeRouter();
  AddUp(*router, "a:1");
  auto plan = router->Route({.prompt_tokens = 16});
  RoutePlan moved = std::move(*plan);
  EXPECT_FALSE(plan->valid());
  EXPECT_TRUE(moved.valid());
  EXPECT_EQ(router->Snapshot()[0].in_flight, 1);
  moved.Release();
  moved.Release();
  EXPECT_EQ(router->Snapshot()[0].in_flight, 0);
  EXPECT_EQ(router->Snapshot()[0].predicted_requests, 0);
}

}  // namespace
}  // namespace tandem::router
