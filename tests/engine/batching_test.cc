// Continuous batching, prefix reuse and preemption on every backend (cpu, and cuda where a device
// is present): none of them may change what a request produces.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <future>
#include <random>
#include <thread>

#include "kvcache/clock.h"

#include "engine_test_util.h"

namespace tandem::engine::testing {
namespace {

constexpr uint32_t kSeed = 20261125;

std::string Model() { return (GoldenDir() / "llama_gqa_f32").string(); }

std::vector<int32_t> RandomPrompt(std::mt19937& rng, int len) {
  std::uniform_int_distribution<int32_t> dist(3, 255);
  std::vector<int32_t> p(len);
  for (auto& t : p) t = dist(rng);
  return p;
}

// 8 requests of mixed lengths: greedy ones and seeded sampling ones.
std::vector<GenerateRequest> MixedRequests(int max_tokens = 12) {
  std::mt19937 rng(kSeed);
  const int lens[] = {1, 5, 17, 33, 64, 70, 100, 140};
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 8; ++i) {
    GenerateRequest r = Greedy(RandomPrompt(rng, lens[i]), max_tokens + i);
    if (i % 2 == 1) {
      r.sampling.temperature = 0.8f;
      r.sampling.top_p = 0.9f;
      r.sampling.top_k = 50;
      r.sampling.seed = 1000 + i;
    }
    requests.push_back(r);
  }
  return requests;
}

// The suites run once per backend; cuda instances skip without a device.
class PerBackend : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cuda" && !CudaDeviceAvailable()) GTEST_SKIP() << "no cuda device";
  }
  BackendOptions Backend(int num_blocks = 0) const {
    BackendOptions b;
    b.backend = GetParam();
    b.num_blocks = num_blocks;
    return b;
  }
  // Logits of the same tokens computed in different batches: fp32 on cpu, bf16 on cuda.
  float LogitsTolerance() const { return GetParam() == "cpu" ? 1e-4f : 2e-2f; }
};

using BatchingTest = PerBackend;
using PrefixReuseTest = PerBackend;
using PreemptionTest = PerBackend;
using EngineTest = PerBackend;
using TieredCacheTest = PerBackend;

std::vector<Completion> RunAlone(const std::vector<GenerateRequest>& requests,
                                 const BackendOptions& backend) {
  auto engine = MakeEngine(Model(), backend);
  std::vector<Completion> out;
  for (const auto& r : requests) out.push_back(RunAll(*engine, {r})[0]);
  return out;
}

TEST_P(BatchingTest, RequestAloneAndInBatchOfEightGiveIdenticalTokens) {
  SCOPED_TRACE("seed " + std::to_string(kSeed));
  const auto requests = MixedRequests();
  const auto alone = RunAlone(requests, Backend());
  EngineOptions options;
  options.enable_prefix_caching = false;
  auto engine = MakeEngine(Model(), Backend(), options);
  const auto batched = RunAll(*engine, requests);
  ASSERT_EQ(batched.size(), alone.size());
  for (size_t i = 0; i < alone.size(); ++i) {
    EXPECT_EQ(batched[i].tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(batched[i].tokens.size(), requests[i].sampling.max_tokens);
  }
}

TEST_P(BatchingTest, SameSeedGivesSameTokensDifferentSeedDiffers) {
  std::mt19937 rng(kSeed);
  GenerateRequest r = Greedy(RandomPrompt(rng, 20), 32);
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 7;
  auto engine = MakeEngine(Model(), Backend());
  GenerateRequest other = r;
  other.sampling.seed = 8;
  const auto done = RunAll(*engine, {r, r, other});
  EXPECT_EQ(done[0].tokens, done[1].tokens);
  EXPECT_NE(done[0].tokens, done[2].tokens);
}

TEST_P(PrefixReuseTest, ReusedPrefixGivesSameLogitsAsNoReuse) {
  std::mt19937 rng(kSeed + 1);
  const std::vector<int32_t> shared = RandomPrompt(rng, 80);
  std::vector<int32_t> second = shared;
  for (int32_t t : RandomPrompt(rng, 11)) second.push_back(t);

  GenerateRequest a = Greedy(shared, 4);
  GenerateRequest b = Greedy(second, 16);
  b.prompt_logits = PromptLogits::kLast;

  auto cached_engine = MakeEngine(Model(), Backend());
  RunAll(*cached_engine, {a});
  const Completion reused = RunAll(*cached_engine, {b})[0];
  EXPECT_EQ(reused.cached_prompt_tokens, 80) << "the 5 full blocks of the shared prefix";

  EngineOptions no_cache;
  no_cache.enable_prefix_caching = false;
  auto plain_engine = MakeEngine(Model(), Backend(), no_cache);
  const Completion fresh = RunAll(*plain_engine, {b})[0];
  EXPECT_EQ(fresh.cached_prompt_tokens, 0);

  ASSERT_EQ(reused.logits.size(), fresh.logits.size());
  ASSERT_EQ(reused.logits_rows, 1);
  for (size_t i = 0; i < fresh.logits.size(); ++i) {
    EXPECT_NEAR(reused.logits[i], fresh.logits[i],
                LogitsTolerance() * (1.0f + std::abs(fresh.logits[i])));
  }
  EXPECT_EQ(reused.tokens, fresh.tokens);
}

TEST_P(PrefixReuseTest, FullyCachedPromptStillRecomputesItsLastToken) {
  std::mt19937 rng(kSeed + 2);
  const std::vector<int32_t> prompt = RandomPrompt(rng, 64);  // Exactly 4 blocks.
  auto engine = MakeEngine(Model(), Backend());
  const Completion first = RunAll(*engine, {Greedy(prompt, 8)})[0];
  const Completion again = RunAll(*engine, {Greedy(prompt, 8)})[0];
  EXPECT_EQ(again.cached_prompt_tokens, 48);
  EXPECT_EQ(again.tokens, first.tokens);
}

TEST_P(PrefixReuseTest, CacheSaltSeparatesRequests) {
  std::mt19937 rng(kSeed + 3);
  GenerateRequest r = Greedy(RandomPrompt(rng, 40), 2);
  auto engine = MakeEngine(Model(), Backend());
  RunAll(*engine, {r});
  r.cache_salt = "tenant-b";
  EXPECT_EQ(RunAll(*engine, {r})[0].cached_prompt_tokens, 0);
}

TEST_P(PreemptionTest, TooSmallPoolStillCompletesEveryRequestWithSameTokens) {
  SCOPED_TRACE("seed " + std::to_string(kSeed));
  // Every request grows by 3 to 4 blocks while it decodes: the batch needs about 50 blocks at
  // its peak, and 16 force preemption by recompute.
  const auto requests = MixedRequests(50);
  const auto alone = RunAlone(requests, Backend());
  auto engine = MakeEngine(Model(), Backend(/*num_blocks=*/16));
  const auto batched = RunAll(*engine, requests);
  ASSERT_EQ(batched.size(), alone.size());
  for (size_t i = 0; i < alone.size(); ++i) {
    EXPECT_EQ(batched[i].tokens, alone[i].tokens) << "request " << i;
    EXPECT_TRUE(batched[i].error.ok()) << batched[i].error;
  }
  EXPECT_GT(engine->stats().preemptions, 0);
  EXPECT_TRUE(WaitUntil([&] { return engine->stats().blocks_available == 16; }))
      << "every block back in the pool, have " << engine->stats().blocks_available;
}

// A prefix pushed out of the pool (G1) is loaded back from the host tier (G2) or the disk tier
// (G3) instead of being recomputed, and the request's logits and tokens are those of a full
// recomputation.
TEST_P(TieredCacheTest, OnboardingFromHostOrDiskGivesTheLogitsOfRecomputation) {
  // The reference: the same request on an engine that caches nothing.
  std::mt19937 rng(kSeed + 5);
  std::vector<int32_t> extended = RandomPrompt(rng, 80);
  for (int32_t t : RandomPrompt(rng, 11)) extended.push_back(t);
  GenerateRequest b = Greedy(extended, 16);
  b.prompt_logits = PromptLogits::kLast;
  EngineOptions no_cache;
  no_cache.enable_prefix_caching = false;
  const Completion fresh = RunAll(*MakeEngine(Model(), Backend(16), no_cache), {b})[0];

  const std::string disk_path = std::string(TANDEM_BINARY_DIR) + "/tiered_cache_test-" +
                                GetParam() + "-" + std::to_string(getpid());
  struct Case {
    std::string name;
    EngineOptions options;
    bool from_disk = false;
  };
  std::vector<Case> cases(3);
  cases[0].name = "host tier";
  cases[0].options.host_cache_blocks = 64;
  cases[1].name = "host tier spilling to disk";  // G2 holds 2 blocks: the prefix is on G3
  cases[1].options.host_cache_blocks = 2;
  cases[1].from_disk = true;
  cases[2].name = "disk tier alone";
  cases[2].from_disk = true;
  for (int i = 1; i <= 2; ++i) {
    cases[i].options.disk_cache_path = disk_path;
    cases[i].options.disk_cache_blocks = 64;
    cases[i].options.disk_cache_admit_after_reuses = 0;
  }
  for (Case& c : cases) {
    SCOPED_TRACE(c.name);
    // The shared prompt, then a 254-token request that takes all 16 pool blocks (pushing the
    // prefix out of the pool), then the shared prompt + 11 tokens.
    std::mt19937 again(kSeed + 5);
    const std::vector<int32_t> shared = RandomPrompt(again, 80);  // 5 full blocks
    RandomPrompt(again, 11);
    const std::vector<int32_t> filler = RandomPrompt(again, 250);
    auto engine = MakeEngine(Model(), Backend(/*num_blocks=*/16), c.options);
    RunAll(*engine, {Greedy(shared, 4)});
    RunAll(*engine, {Greedy(filler, 4)});
    const Completion reused = RunAll(*engine, {b})[0];
    const EngineStats stats = engine->stats();
    const KvTiersStats& tiers = stats.tiers;
    EXPECT_EQ(reused.cached_prompt_tokens, 80) << "the shared prefix's 5 blocks, onboarded";
    EXPECT_EQ(stats.onboarded_blocks, 5);
    EXPECT_EQ(c.from_disk ? tiers.onboarded_disk : tiers.onboarded_host, 5u);
    ASSERT_EQ(reused.logits.size(), fresh.logits.size());
    for (size_t i = 0; i < fresh.logits.size(); ++i) {
      EXPECT_NEAR(reused.logits[i], fresh.logits[i],
                  LogitsTolerance() * (1.0f + std::abs(fresh.logits[i])));
    }
    EXPECT_EQ(reused.tokens, fresh.tokens);
  }
  std::filesystem::remove(disk_path);
}

// Requests cancelled while their prefix may be loading from disk, and an engine stopped with
// loads in flight, leave every block back in the pool and nothing half-done behind.
TEST_P(TieredCacheTest, CancellingDuringALoadFreesEverything) {
  const std::string disk_path = std::string(TANDEM_BINARY_DIR) + "/tiered_cancel_test-" +
                                GetParam() + "-" + std::to_string(getpid());
  EngineOptions options;
  options.disk_cache_path = disk_path;
  options.disk_cache_blocks = 64;
  options.disk_cache_admit_after_reuses = 0;
  std::mt19937 rng(kSeed + 6);
  const std::vector<int32_t> shared = RandomPrompt(rng, 96);
  const std::vector<int32_t> filler = RandomPrompt(rng, 250);
  {
    auto engine = MakeEngine(Model(), Backend(/*num_blocks=*/16), options);
    RunAll(*engine, {Greedy(shared, 4)});
    RunAll(*engine, {Greedy(filler, 4)});
    for (int round = 0; round < 3; ++round) {
      auto submitted = engine->Submit(Greedy(shared, 8));
      ASSERT_TRUE(submitted.ok());
      engine->Cancel(submitted->first);
      const Completion c = Collect(*submitted->second);
      EXPECT_TRUE(c.finish_reason == FinishReason::kCancelled ||
                  c.finish_reason == FinishReason::kLength);
      EXPECT_TRUE(WaitUntil([&] { return engine->stats().blocks_available == 16; }))
          << "have " << engine->stats().blocks_available;
    }
    // Left loading when the engine stops: its destructor cancels the load.
    ASSERT_TRUE(engine->Submit(Greedy(shared, 8)).ok());
  }
  std::filesystem::remove(disk_path);
}

// Tier options that cannot work are refused when the engine is made, with a clear error.
TEST_P(TieredCacheTest, UnusableTierOptionsAreRefused) {
  const auto status_of = [&](const EngineOptions& options) {
    return CreateEngine({.model = Model()}, Backend(16), options).status();
  };
  EngineOptions without_caching;
  without_caching.enable_prefix_caching = false;
  without_caching.host_cache_blocks = 8;
  EXPECT_EQ(status_of(without_caching).code(), StatusCode::kInvalidArgument);
  EngineOptions no_path;
  no_path.disk_cache_blocks = 8;
  EXPECT_EQ(status_of(no_path).code(), StatusCode::kInvalidArgument);
  EngineOptions bad_path = no_path;
  bad_path.disk_cache_path = "/nonexistent-dir/kv";
  const Status s = status_of(bad_path);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("/nonexistent-dir/kv"), std::string::npos) << s;
}

TEST_P(EngineTest, RejectsBadRequestsWithoutSideEffects) {
  auto engine = MakeEngine(Model(), Backend());
  EXPECT_EQ(engine->Submit(Greedy({}, 4)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(Greedy({1, 256}, 4)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(Greedy({1, -1}, 4)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(Greedy({1, 2}, 0)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(Greedy({1, 2}, 100000)).status().code(), StatusCode::kInvalidArgument);
  GenerateRequest bad = Greedy({1, 2}, 4);
  bad.sampling.top_p = 0.0f;
  EXPECT_EQ(engine->Submit(bad).status().code(), StatusCode::kInvalidArgument);
  // The engine still serves.
  EXPECT_EQ(RunAll(*engine, {Greedy({1, 2, 3}, 4)})[0].tokens.size(), 4u);
}

TEST_P(EngineTest, StopsOnStopTokenAndEos) {
  auto engine = MakeEngine(Model(), Backend());
  const Completion free_run = RunAll(*engine, {Greedy({5, 6, 7}, 10)})[0];
  ASSERT_EQ(free_run.tokens.size(), 10u);
  GenerateRequest r = Greedy({5, 6, 7}, 10);
  r.sampling.stop_token_ids = {free_run.tokens[3]};
  const Completion stopped = RunAll(*engine, {r})[0];
  EXPECT_EQ(stopped.finish_reason, FinishReason::kStop);
  EXPECT_LE(stopped.tokens.size(), 4u);
  EXPECT_EQ(stopped.tokens.back(), free_run.tokens[3]);
}

TEST_P(EngineTest, CancelEndsRequestAndFreesBlocks) {
  auto engine = MakeEngine(Model(), Backend());
  const int total = engine->stats().blocks_total;
  auto submitted = engine->Submit(Greedy({5, 6, 7}, 400));
  ASSERT_TRUE(submitted.ok());
  auto& [id, stream] = *submitted;
  ASSERT_TRUE(stream->Pop(std::chrono::steady_clock::now() + std::chrono::seconds(30)));
  engine->Cancel(id);
  const Completion c = Collect(*stream);
  EXPECT_EQ(c.finish_reason, FinishReason::kCancelled);
  EXPECT_TRUE(WaitUntil([&] { return engine->stats().blocks_available == total; }))
      << "blocks freed, have " << engine->stats().blocks_available << " of " << total;
}

// Issue 17, first step: a prefill for a decode worker keeps its prompt's KV under a lease.
TEST_P(EngineTest, APrefillOnlyRequestLeasesItsPromptBlocksUntilReleased) {
  auto engine = MakeEngine(Model(), Backend());
  const int total = engine->stats().blocks_total;
  const int block_size = engine->kv_layout().block_size;
  std::mt19937 rng(kSeed);
  const std::vector<int32_t> prompt = RandomPrompt(rng, 3 * block_size + 5);
  const Completion whole = RunAll(*engine, {Greedy(prompt, 6)})[0];

  GenerateRequest r = Greedy(prompt, 6);
  r.prefill_only = true;
  const Completion prefill = RunAll(*engine, {r})[0];
  ASSERT_TRUE(prefill.error.ok()) << prefill.error;
  // One token, the same first token as the whole request, and the prompt's 4 blocks leased.
  ASSERT_EQ(prefill.tokens.size(), 1u);
  EXPECT_EQ(prefill.tokens[0], whole.tokens[0]);
  EXPECT_EQ(prefill.finish_reason, FinishReason::kLength);
  ASSERT_TRUE(prefill.kv_handle.has_value());
  const KvHandle& handle = *prefill.kv_handle;
  EXPECT_NE(handle.lease_id, 0u);
  EXPECT_EQ(handle.num_tokens, static_cast<int>(prompt.size()));
  EXPECT_EQ(handle.block_ids.size(), 4u);
  EXPECT_EQ(handle.expires_in_ms, 30000);
  EXPECT_TRUE(WaitUntil([&] {
    const EngineStats s = engine->stats();
    return s.kv_leases == 1 && s.blocks_available == total - 4;
  })) << engine->stats().blocks_available;
  // The handle's blocks are where the pool's memory holds the prompt's KV (what a transfer
  // backend registers and a decode worker reads).
  const std::optional<KvMemory> memory = engine->kv_memory();
  ASSERT_TRUE(memory.has_value());
  const size_t block_bytes = engine->kv_layout().BlockBytes();
  EXPECT_EQ(memory->bytes, static_cast<size_t>(total) * block_bytes);
  if (!memory->device) {
    for (int32_t b : handle.block_ids) {
      const auto* p = static_cast<const std::byte*>(memory->base) + b * block_bytes;
      EXPECT_TRUE(std::any_of(p, p + block_bytes, [](std::byte x) { return x != std::byte{0}; }))
          << "block " << b << " holds nothing";
    }
  }

  // Released once; a second release, or an unknown lease, is NotFound and changes nothing.
  std::promise<Status> released, again, unknown;
  engine->ReleaseKv(handle.lease_id, {}, [&](const Status& s) { released.set_value(s); });
  engine->ReleaseKv(handle.lease_id, {}, [&](const Status& s) { again.set_value(s); });
  engine->ReleaseKv(handle.lease_id ^ 1, {}, [&](const Status& s) { unknown.set_value(s); });
  EXPECT_TRUE(released.get_future().get().ok());
  EXPECT_EQ(again.get_future().get().code(), StatusCode::kNotFound);
  EXPECT_EQ(unknown.get_future().get().code(), StatusCode::kNotFound);
  EXPECT_TRUE(WaitUntil([&] {
    const EngineStats s = engine->stats();
    return s.kv_leases == 0 && s.blocks_available == total;
  })) << engine->stats().blocks_available;

  // A prefill whose first token ends it (a stop token) has nothing to hand over: no lease.
  GenerateRequest stopping = r;
  stopping.sampling.stop_token_ids = {whole.tokens[0]};
  const Completion stopped = RunAll(*engine, {stopping})[0];
  EXPECT_EQ(stopped.finish_reason, FinishReason::kStop);
  EXPECT_FALSE(stopped.kv_handle.has_value());
}

TEST_P(EngineTest, KvLeasesNeverReleasedExpireAndFreeTheirBlocks) {
  kvcache::ManualClock clock;
  EngineOptions options;
  options.clock = &clock;
  options.kv_lease_ttl = std::chrono::milliseconds(5000);
  auto engine = MakeEngine(Model(), Backend(), options);
  const int total = engine->stats().blocks_total;
  GenerateRequest r = Greedy({5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21}, 4);
  r.prefill_only = true;
  const Completion prefill = RunAll(*engine, {r})[0];
  ASSERT_TRUE(prefill.kv_handle.has_value());
  EXPECT_TRUE(WaitUntil([&] { return engine->stats().kv_leases == 1; }));
  clock.Advance(4'000'000'000);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // Several expiry checks.
  EXPECT_EQ(engine->stats().kv_leases, 1);
  clock.Advance(1'000'000'000);  // Its 5 s are up.
  EXPECT_TRUE(WaitUntil([&] {
    const EngineStats s = engine->stats();
    return s.kv_leases == 0 && s.kv_leases_expired == 1 && s.blocks_available == total;
  })) << engine->stats().blocks_available;
  std::promise<Status> late;
  engine->ReleaseKv(prefill.kv_handle->lease_id, {}, [&](const Status& s) { late.set_value(s); });
  EXPECT_EQ(late.get_future().get().code(), StatusCode::kNotFound);
}

const auto kBackendName = [](const auto& info) { return info.param; };
INSTANTIATE_TEST_SUITE_P(Backends, BatchingTest, ::testing::ValuesIn(TestBackends()), kBackendName);
INSTANTIATE_TEST_SUITE_P(Backends, PrefixReuseTest, ::testing::ValuesIn(TestBackends()),
                         kBackendName);
INSTANTIATE_TEST_SUITE_P(Backends, PreemptionTest, ::testing::ValuesIn(TestBackends()),
                         kBackendName);
INSTANTIATE_TEST_SUITE_P(Backends, EngineTest, ::testing::ValuesIn(TestBackends()), kBackendName);
INSTANTIATE_TEST_SUITE_P(Backends, TieredCacheTest, ::testing::ValuesIn(TestBackends()),
                         kBackendName);

// Issue 16 (identity contract): a worker started on the same checkpoint from another directory
// hashes its blocks the same way, so a router can match prefixes across workers; other weights
// hash them differently.
TEST(EngineIdentityTest, SameCheckpointFromAnotherPathHashesBlocksAlike) {
  namespace fs = std::filesystem;
  const fs::path copy =
      fs::temp_directory_path() / ("tandem_identity_test_" + std::to_string(::getpid()));
  fs::remove_all(copy);
  fs::copy(Model(), copy, fs::copy_options::recursive);
  auto stored = [](LlmEngine& engine) {
    std::vector<int32_t> prompt;
    for (int i = 0; i < 40; ++i) prompt.push_back(3 + (i * 11) % 250);
    RunAll(engine, {Greedy(prompt, 1)});
    std::vector<BlockHash> hashes;
    for (const auto& e : engine.kv_events().Read(1).events) {
      if (e.kind == kvcache::KvEvent::Kind::kStored) {
        hashes.insert(hashes.end(), e.block_hashes.begin(), e.block_hashes.end());
      }
    }
    return hashes;
  };
  auto original = MakeEngine(Model());
  auto moved = MakeEngine(copy.string());
  BackendOptions cpu;
  auto random = CreateEngine({.model = Model(), .random_weights = true}, cpu, EngineOptions());
  ASSERT_TRUE(random.ok()) << random.status();
  EXPECT_EQ(original->model_identity(), moved->model_identity());
  EXPECT_EQ(original->model_identity().find(Model()), std::string::npos);
  const auto hashes = stored(*original);
  ASSERT_EQ(hashes.size(), 2u);  // Two full blocks of 16.
  EXPECT_EQ(stored(*moved), hashes);
  EXPECT_NE(stored(**random), hashes);
  fs::remove_all(copy);
}

}  // namespace
}  // namespace tandem::engine::testing
