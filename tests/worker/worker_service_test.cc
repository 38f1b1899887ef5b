// The worker service against a fake engine (issue 16): WorkerServer takes any tandem::Engine, so
// a fake's KV events, stats, identity and layout reach the wire as they would from LlmEngine. The
// fake's events are appended by the test thread through a real KvEventLog.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "kv_subscription.h"
#include "kvcache/kv_events.h"
#include "tandem/block_hash.h"
#include "tandem/engine.h"
#include "tandem/v1/worker.grpc.pb.h"
#include "worker/kv_event_stream.h"
#include "worker/worker_server.h"

namespace tandem::worker {
namespace {

using std::chrono::seconds;
using testing::KvSubscription;

class FakeEngine final : public Engine {
 public:
  explicit FakeEngine(size_t event_capacity = 4096) : events_(event_capacity) {
    layout_ = {
        .num_layers = 2, .num_kv_heads = 4, .head_dim = 8, .block_size = 32, .element_bytes = 2};
  }

  StatusOr<std::pair<RequestId, std::shared_ptr<OutputStream>>> Submit(
      GenerateRequest request) override {
    return UnimplementedError("the fake engine runs nothing");
  }
  void Cancel(RequestId id) override {}
  std::optional<KvMemory> kv_memory() const override { return std::nullopt; }
  void ReleaseKv(uint64_t lease_id, std::vector<int32_t> blocks,
                 std::function<void(const Status&)> done) override {
    done(NotFoundError("the fake engine grants no KV leases"));
  }
  void SetKvPuller(std::shared_ptr<KvPuller> puller) override {}
  int vocab_size() const override { return 1000; }
  int max_model_len() const override { return 4096; }
  EngineStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  kvcache::KvEventLog& kv_events() override { return events_; }
  const std::string& model_identity() const override { return identity_; }
  const KvLayout& kv_layout() const override { return layout_; }

  void set_stats(const EngineStats& stats) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_ = stats;
  }

 private:
  kvcache::KvEventLog events_;
  const std::string identity_ = "fake-model";
  KvLayout layout_;
  mutable std::mutex mu_;
  EngineStats stats_;
};

class WorkerServiceTest : public ::testing::Test {
 protected:
  void Start(size_t event_capacity = 4096) {
    auto engine = std::make_unique<FakeEngine>(event_capacity);
    engine_ = engine.get();
    WorkerServerOptions options;
    options.service.worker_id = "fake-1";
    options.service.model = "fake";
    auto server = WorkerServer::Create(std::move(engine), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    stub_ = v1::Worker::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->grpc_port()), grpc::InsecureChannelCredentials()));
  }
  kvcache::KvEventLog& log() { return engine_->kv_events(); }

  std::unique_ptr<WorkerServer> server_;
  FakeEngine* engine_ = nullptr;  // Owned by server_.
  std::unique_ptr<v1::Worker::Stub> stub_;
};

std::vector<uint64_t> Hashes(const v1::KvSnapshotPart& part) {
  return {part.block_hashes().begin(), part.block_hashes().end()};
}

TEST_F(WorkerServiceTest, FakeEnginesEventsAppearOnTheStreamAsTheyHappen) {
  Start();
  const BlockHash chain[] = {101, 102, 103};
  log().Stored(KvTier::kDevice, std::nullopt, {chain, 2});
  log().Stored(KvTier::kHost, 101, {&chain[1], 1});
  KvSubscription sub(*stub_, 0);
  ASSERT_TRUE(sub.ReadEvents(2));
  // Live: appended after the first message, woken by the log's listener.
  log().Stored(KvTier::kDisk, 102, {&chain[2], 1});
  log().Removed(KvTier::kDevice, {chain, 1});
  log().Cleared();
  ASSERT_TRUE(sub.ReadEvents(5));
  ASSERT_EQ(sub.events.size(), 5u);
  EXPECT_TRUE(sub.parts.empty());
  for (size_t i = 0; i < sub.events.size(); ++i) EXPECT_EQ(sub.events[i].id(), i + 1);

  const v1::KvStored& first = sub.events[0].stored();
  EXPECT_EQ(first.tier(), v1::KV_TIER_DEVICE);
  EXPECT_FALSE(first.has_parent());
  EXPECT_EQ(std::vector<uint64_t>(first.block_hashes().begin(), first.block_hashes().end()),
            (std::vector<uint64_t>{101, 102}));
  EXPECT_EQ(sub.events[1].stored().tier(), v1::KV_TIER_HOST);
  EXPECT_TRUE(sub.events[1].stored().has_parent());
  EXPECT_EQ(sub.events[1].stored().parent_hash(), 101u);
  EXPECT_EQ(sub.events[2].stored().tier(), v1::KV_TIER_DISK);
  ASSERT_TRUE(sub.events[3].has_removed());
  EXPECT_EQ(sub.events[3].removed().tier(), v1::KV_TIER_DEVICE);
  EXPECT_EQ(sub.events[3].removed().block_hashes(0), 101u);
  EXPECT_TRUE(sub.events[4].has_cleared());
}

TEST_F(WorkerServiceTest, EventsAvailableTogetherTravelInFewMessagesOfAtMost4096) {
  Start(/*event_capacity=*/8192);
  for (BlockHash h = 1; h <= 5000; ++h) log().Stored(KvTier::kDevice, std::nullopt, {&h, 1});
  KvSubscription sub(*stub_, 1);
  ASSERT_TRUE(sub.ReadEvents(5000));
  // Every event was there when the first write started: a full message, then the rest.
  ASSERT_EQ(sub.messages.size(), 2u);
  EXPECT_EQ(sub.messages[0].events_size(), static_cast<int>(kMaxBatchEvents));
  EXPECT_EQ(sub.messages[1].events_size(), 5000 - static_cast<int>(kMaxBatchEvents));
  EXPECT_EQ(sub.events.back().id(), 5000u);
}

TEST_F(WorkerServiceTest, SnapshotIsSplitIntoPartsOfAtMost65536HashesPerTier) {
  Start(/*event_capacity=*/2);
  std::vector<BlockHash> device(70000);
  for (size_t i = 0; i < device.size(); ++i) device[i] = 1000 + i;
  log().Stored(KvTier::kDevice, std::nullopt, device);
  const BlockHash host[] = {5, 6};
  log().Stored(KvTier::kHost, std::nullopt, host);
  const BlockHash disk = 7;
  log().Stored(KvTier::kDisk, std::nullopt, {&disk, 1});  // Events 1..3; the ring keeps 2, 3.

  KvSubscription sub(*stub_, 1);
  ASSERT_TRUE(sub.ReadSnapshot());
  ASSERT_EQ(sub.parts.size(), 4u);
  std::vector<uint64_t> got_device;
  for (size_t i = 0; i < sub.parts.size(); ++i) {
    EXPECT_EQ(sub.parts[i].as_of_event_id(), 3u);
    EXPECT_EQ(sub.parts[i].last(), i == 3);
    EXPECT_LE(sub.parts[i].block_hashes_size(), static_cast<int>(kMaxSnapshotPartHashes));
  }
  EXPECT_EQ(sub.parts[0].tier(), v1::KV_TIER_DEVICE);
  EXPECT_EQ(sub.parts[1].tier(), v1::KV_TIER_DEVICE);
  for (int i = 0; i < 2; ++i) {
    for (uint64_t h : Hashes(sub.parts[i])) got_device.push_back(h);
  }
  std::sort(got_device.begin(), got_device.end());
  EXPECT_EQ(got_device, std::vector<uint64_t>(device.begin(), device.end()));
  EXPECT_EQ(sub.parts[2].tier(), v1::KV_TIER_HOST);
  std::vector<uint64_t> got_host = Hashes(sub.parts[2]);
  std::sort(got_host.begin(), got_host.end());
  EXPECT_EQ(got_host, (std::vector<uint64_t>{5, 6}));
  EXPECT_EQ(sub.parts[3].tier(), v1::KV_TIER_DISK);
  EXPECT_EQ(Hashes(sub.parts[3]), (std::vector<uint64_t>{7}));

  // Then the events after the snapshot, live.
  log().Cleared();
  ASSERT_TRUE(sub.ReadEvents(1));
  EXPECT_EQ(sub.events[0].id(), 4u);
  EXPECT_TRUE(sub.events[0].has_cleared());
}

TEST_F(WorkerServiceTest, AWorkerHoldingNothingStillSendsALastSnapshotPart) {
  Start();
  KvSubscription sub(*stub_, 1000);  // Beyond the newest id + 1: another incarnation's id.
  ASSERT_TRUE(sub.ReadSnapshot());
  ASSERT_EQ(sub.parts.size(), 1u);
  EXPECT_EQ(sub.parts[0].as_of_event_id(), 0u);
  EXPECT_EQ(sub.parts[0].block_hashes_size(), 0);
  EXPECT_EQ(sub.parts[0].tier(), v1::KV_TIER_DEVICE);
  const BlockHash h = 9;
  log().Stored(KvTier::kDevice, std::nullopt, {&h, 1});
  ASSERT_TRUE(sub.ReadEvents(1));
  EXPECT_EQ(sub.events[0].id(), 1u);
}

TEST_F(WorkerServiceTest, FakeEnginesStatsAndLastEventIdFillTheLoadReport) {
  Start();
  EngineStats stats;
  stats.blocks_total = 100;
  stats.blocks_available = 60;
  stats.waiting = 3;
  stats.queued_prefill_tokens = 77;
  stats.simulation = SimulationStats{.expected_seconds = 1.5, .actual_seconds = 2.0, .steps = 4};
  engine_->set_stats(stats);
  for (BlockHash h = 1; h <= 5; ++h) log().Stored(KvTier::kDevice, std::nullopt, {&h, 1});

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(5));
  v1::StreamLoadRequest request;
  request.set_interval_ms(10);
  auto reader = stub_->StreamLoad(&ctx, request);
  v1::LoadReport report;
  ASSERT_TRUE(reader->Read(&report));
  ctx.TryCancel();
  reader->Finish().IgnoreError();
  EXPECT_EQ(report.active_blocks(), 40);
  EXPECT_EQ(report.free_blocks(), 60);
  EXPECT_EQ(report.waiting_requests(), 3);
  EXPECT_EQ(report.queued_prefill_tokens(), 77);
  EXPECT_EQ(report.sim_expected_seconds(), 1.5);
  EXPECT_EQ(report.sim_actual_seconds(), 2.0);
  EXPECT_EQ(report.kv_events_last_id(), 5u);
}

TEST_F(WorkerServiceTest, GetInfoReportsTheFakeEnginesIdentityAndLayout) {
  Start();
  grpc::ClientContext ctx;
  v1::WorkerInfo info;
  ASSERT_TRUE(stub_->GetInfo(&ctx, v1::GetInfoRequest(), &info).ok());
  EXPECT_EQ(info.worker_id(), "fake-1");
  EXPECT_EQ(info.role(), v1::WORKER_ROLE_AGGREGATED);
  EXPECT_EQ(info.block_size(), 32);
  EXPECT_EQ(info.vocab_size(), 1000);
  EXPECT_EQ(info.max_model_len(), 4096);
  EXPECT_EQ(info.model_identity(), "fake-model");
  EXPECT_EQ(info.block_hash_seed(), BlockHashSeed("fake-model"));
  EXPECT_EQ(info.kv_layout().num_layers(), 2);
  EXPECT_EQ(info.kv_layout().num_kv_heads(), 4);
  EXPECT_EQ(info.kv_layout().head_dim(), 8);
  EXPECT_EQ(info.kv_layout().block_size(), 32);
  EXPECT_EQ(info.kv_layout().element_bytes(), 2);
}

}  // namespace
}  // namespace tandem::worker
