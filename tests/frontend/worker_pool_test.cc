// The frontend's WorkerPool against a scripted peer: an in-process tandem.v1.Worker server whose
// KV event streams send what each test scripts — gaps, malformed events and snapshot parts, a
// snapshot then live events — and whose identity can be made inconsistent. A real worker never
// sends these (tests/integration/kv_routing_test.cc runs real ones); a peer that does must be
// refused with a resubscription, never trusted and never reach a check.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "frontend/worker_pool.h"
#include "router/discovery.h"
#include "tandem/block_hash.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::frontend {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kIdentity[] = "scripted-model";

v1::KvEventBatch Events(std::initializer_list<std::pair<uint64_t, std::vector<uint64_t>>> stored) {
  v1::KvEventBatch batch;
  for (const auto& [id, hashes] : stored) {
    v1::KvEvent* e = batch.add_events();
    e->set_id(id);
    e->mutable_stored()->set_tier(v1::KV_TIER_DEVICE);
    for (uint64_t h : hashes) e->mutable_stored()->add_block_hashes(h);
  }
  return batch;
}

v1::KvEventBatch SnapshotPart(uint64_t as_of, v1::KvTier tier, std::vector<uint64_t> hashes,
                              bool last) {
  v1::KvEventBatch batch;
  v1::KvSnapshotPart* part = batch.mutable_snapshot();
  part->set_as_of_event_id(as_of);
  part->set_tier(tier);
  for (uint64_t h : hashes) part->add_block_hashes(h);
  part->set_last(last);
  return batch;
}

// A worker whose KV event streams play scripts: the n-th SubscribeKvEvents call sends the n-th
// script's messages, then stays open until the client leaves (the last script repeats).
class ScriptedWorker final : public v1::Worker::Service {
 public:
  explicit ScriptedWorker(std::vector<std::vector<v1::KvEventBatch>> scripts,
                          uint64_t seed = BlockHashSeed(kIdentity))
      : scripts_(std::move(scripts)), seed_(seed) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~ScriptedWorker() override { server_->Shutdown(std::chrono::system_clock::now()); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // The from_event_id of every SubscribeKvEvents call so far.
  std::vector<uint64_t> subscriptions() {
    std::lock_guard lock(mu_);
    return from_ids_;
  }

  grpc::Status GetInfo(grpc::ServerContext*, const v1::GetInfoRequest*,
                       v1::WorkerInfo* info) override {
    info->set_worker_id("scripted");
    info->set_role(v1::WORKER_ROLE_AGGREGATED);
    info->set_model("scripted");
    info->set_block_size(16);
    info->set_vocab_size(1000);
    info->set_max_model_len(4096);
    info->set_model_identity(kIdentity);
    info->set_block_hash_seed(seed_);
    return grpc::Status::OK;
  }

  grpc::Status StreamLoad(grpc::ServerContext* context, const v1::StreamLoadRequest*,
                          grpc::ServerWriter<v1::LoadReport>* writer) override {
    while (!context->IsCancelled()) {
      v1::LoadReport report;
      report.set_free_blocks(100);
      if (!writer->Write(report)) break;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return grpc::Status::OK;
  }

  grpc::Status SubscribeKvEvents(grpc::ServerContext* context,
                                 const v1::SubscribeKvEventsRequest* request,
                                 grpc::ServerWriter<v1::KvEventBatch>* writer) override {
    std::vector<v1::KvEventBatch> script;
    {
      std::lock_guard lock(mu_);
      from_ids_.push_back(request->from_event_id());
      script = scripts_[std::min(from_ids_.size(), scripts_.size()) - 1];
    }
    for (const v1::KvEventBatch& batch : script) {
      if (!writer->Write(batch)) return grpc::Status::OK;
    }
    while (!context->IsCancelled()) std::this_thread::sleep_for(milliseconds(5));
    return grpc::Status::OK;
  }

 private:
  const std::vector<std::vector<v1::KvEventBatch>> scripts_;
  const uint64_t seed_;
  std::mutex mu_;
  std::vector<uint64_t> from_ids_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

std::unique_ptr<WorkerPool> MakePool(const std::string& address) {
  WorkerPoolOptions options;
  options.discovery = router::CreateStaticDiscovery({address});
  options.router.seed = 1;
  options.probe_interval_ms = 20;
  options.load_interval_ms = 20;
  auto pool = WorkerPool::Create(std::move(options));
  EXPECT_TRUE(pool.ok()) << pool.status();
  return std::move(pool).value();
}

template <typename Predicate>
bool WaitFor(Predicate ready, milliseconds timeout = seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ready()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

// How many leading blocks of `hashes` the pool's router sends to a worker that holds them.
int CachedBlocks(WorkerPool& pool, std::vector<uint64_t> hashes) {
  auto slot = pool.Route({.block_hashes = hashes, .prompt_tokens = 16 * int64_t(hashes.size())},
                         "probe", [](const Status&) {});
  if (!slot) return -1;
  const int blocks = slot->plan.overlap().blocks();
  pool.Release(*slot);
  return blocks;
}

TEST(WorkerPoolKvTest, AGapIsRefusedAndTheStreamResumesAfterTheLastEventApplied) {
  ScriptedWorker worker({
      {Events({{1, {11, 12}}, {3, {99}}})},  // Event 2 is missing.
      {Events({{2, {13}}, {3, {14}}})},      // What the resubscription from 2 gets.
  });
  auto pool = MakePool(worker.address());
  ASSERT_TRUE(WaitFor([&] { return CachedBlocks(*pool, {11, 12, 13, 14}) == 4; }));
  EXPECT_EQ(worker.subscriptions(), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(pool->kv_resubscriptions(), 1);
  EXPECT_EQ(pool->router().indexed_blocks(), 4u);  // Nothing of the refused event (99).
  EXPECT_EQ(pool->num_up(), 1u);
}

TEST(WorkerPoolKvTest, MalformedEventsAndSnapshotsAreRefusedWithoutChangingTheIndex) {
  v1::KvEventBatch no_kind;
  no_kind.add_events()->set_id(2);
  v1::KvEventBatch bad_tier = Events({{2, {21}}});
  bad_tier.mutable_events(0)->mutable_stored()->set_tier(static_cast<v1::KvTier>(7));
  ScriptedWorker worker({
      {Events({{1, {20}}}), no_kind},
      {bad_tier},
      {SnapshotPart(5, static_cast<v1::KvTier>(0), {30}, true)},  // Hashes on no tier.
      {SnapshotPart(5, v1::KV_TIER_DEVICE, {30}, false), Events({{6, {31}}})},  // Mid-snapshot.
      {SnapshotPart(5, v1::KV_TIER_DEVICE, {30}, false),
       SnapshotPart(6, v1::KV_TIER_HOST, {31}, true)},  // Parts of two snapshots.
      {SnapshotPart(5, v1::KV_TIER_DEVICE, {20, 21}, false),
       SnapshotPart(5, v1::KV_TIER_HOST, {22}, true), Events({{6, {23}}})},
  });
  auto pool = MakePool(worker.address());
  ASSERT_TRUE(WaitFor([&] { return CachedBlocks(*pool, {20, 21, 22, 23}) == 4; }));
  EXPECT_EQ(pool->kv_resubscriptions(), 5);
  EXPECT_EQ(pool->kv_snapshots(), 1);
  EXPECT_EQ(pool->router().indexed_blocks(), 4u);
  // After each refusal the pool asked again from the last event it had applied: 2 after event 1;
  // after the snapshots cut short, from 1.
  const std::vector<uint64_t> from = worker.subscriptions();
  ASSERT_GE(from.size(), 6u);
  EXPECT_EQ(from[1], 2u);
  EXPECT_EQ(from[2], 2u);
  EXPECT_EQ(from[4], 1u);
  EXPECT_EQ(from[5], 1u);
}

TEST(WorkerPoolKvTest, AWorkerWhoseSeedDoesNotFollowFromItsIdentityIsRefused) {
  ScriptedWorker worker({{Events({{1, {1}}})}}, /*seed=*/12345);
  auto pool = MakePool(worker.address());
  ASSERT_TRUE(WaitFor([&] { return pool->refused_workers() == 1; }));
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(pool->num_up(), 0u);
  EXPECT_TRUE(worker.subscriptions().empty());
}

}  // namespace
}  // namespace tandem::frontend
