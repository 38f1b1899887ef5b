// Disaggregated decode in one process (issue 17): a prefill engine leases a prompt's KV, a decode
// engine pulls what its own cache lacks through the transfer KvPuller (inproc for the cpu
// backend's host pool, cuda_ipc for the cuda backend's device pool), confirms the lease with the
// prefill engine, and generates exactly what one engine generates alone. Every way a source can
// fail ends in a local prefill with the same tokens, and neither pool leaks a block.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "kvcache/clock.h"
#include "tandem/transfer.h"
#include "transfer/kv_puller.h"

#include "engine_test_util.h"

namespace tandem::engine::testing {
namespace {

constexpr uint32_t kSeed = 20261208;

std::vector<int32_t> RandomPrompt(std::mt19937& rng, int len) {
  std::uniform_int_distribution<int32_t> dist(3, 255);
  std::vector<int32_t> p(len);
  for (auto& t : p) t = dist(rng);
  return p;
}

// A prefill engine and a decode engine of one model, their pools registered with one backend,
// and the decode engine's puller releasing leases at the prefill engine directly.
class PdPair {
 public:
  PdPair(const std::string& model, const BackendOptions& backend, EngineOptions prefill_options,
         double simulated_bytes_per_second = 2e9) {
    prefill_ = MakeEngine(model, backend, prefill_options);
    decode_ = MakeEngine(model, backend, {});
    if (!prefill_ || !decode_) {
      ADD_FAILURE() << "no engines";
      return;
    }
    if (prefill_->kv_memory()) {
      auto created = transfer::CreateBackend(prefill_->kv_memory()->device ? "cuda_ipc" : "inproc");
      EXPECT_TRUE(created.ok()) << created.status();
      transfer_ = std::move(created).value();
      prefill_reg_ = Register(*prefill_);
      decode_reg_ = Register(*decode_);
    }
    transfer::KvPullerOptions options;
    options.backend = transfer_.get();
    options.local = decode_reg_.get();
    options.block_bytes = decode_->kv_layout().BlockBytes();
    options.simulated_bytes_per_second = simulated_bytes_per_second;  // The mock's: no memory.
    options.release = [this](const KvSource& source, std::vector<int32_t> blocks,
                             std::function<void(const Status&)> done) {
      prefill_->ReleaseKv(source.handle.lease_id, std::move(blocks),
                          [done = std::move(done)](const Status& s) {
                            if (done) done(s);
                          });
    };
    puller_ = transfer::CreateKvPuller(std::move(options));
    decode_->SetKvPuller(puller_);
  }
  ~PdPair() {
    decode_.reset();  // Its pulls end before the puller and the registrations go.
    puller_.reset();
    decode_reg_.reset();
    prefill_reg_.reset();
  }

  bool ok() const { return prefill_ && decode_ && puller_; }
  LlmEngine& prefill() { return *prefill_; }
  LlmEngine& decode() { return *decode_; }

  // Prefills `prompt` on the prefill engine: its first token and the source of its KV.
  std::pair<int32_t, KvSource> Prefill(const GenerateRequest& request) {
    GenerateRequest r = request;
    r.prefill_only = true;
    const Completion c = RunAll(*prefill_, {r})[0];
    EXPECT_TRUE(c.error.ok()) << c.error;
    EXPECT_EQ(c.tokens.size(), 1u);
    EXPECT_TRUE(c.kv_handle.has_value());
    KvSource source;
    source.peer = "prefill engine";
    if (prefill_reg_) {
      source.transfer_backend = prefill_reg_->descriptor().backend;
      source.transfer_descriptor = prefill_reg_->descriptor().bytes;
    }
    source.layout = prefill_->kv_layout();
    if (c.kv_handle) source.handle = *c.kv_handle;
    return {c.tokens.empty() ? -1 : c.tokens[0], source};
  }

  // The decode request for a prefilled one: its prompt and first token, one token fewer.
  static GenerateRequest DecodeRequest(const GenerateRequest& request, int32_t first,
                                       const KvSource& source) {
    GenerateRequest d = request;
    d.prompt_tokens.push_back(first);
    d.sampling.max_tokens -= 1;
    d.kv_source = source;
    return d;
  }

  // Both pools hold nothing but what their caches may keep (no lease, no request's block).
  void ExpectNoLeaks() {
    EXPECT_TRUE(WaitUntil([&] {
      const EngineStats p = prefill_->stats(), d = decode_->stats();
      return p.kv_leases == 0 && p.blocks_available == p.blocks_total &&
             d.blocks_available == d.blocks_total && d.waiting == 0 && d.running == 0;
    })) << "prefill leases "
        << prefill_->stats().kv_leases << " free " << prefill_->stats().blocks_available << "/"
        << prefill_->stats().blocks_total << ", decode free " << decode_->stats().blocks_available
        << "/" << decode_->stats().blocks_total;
  }

 private:
  std::unique_ptr<transfer::Registration> Register(LlmEngine& engine) {
    const KvMemory m = *engine.kv_memory();
    auto reg = transfer_->Register(
        {m.base, m.bytes, m.device ? transfer::MemoryKind::kDevice : transfer::MemoryKind::kHost,
         m.device_index});
    EXPECT_TRUE(reg.ok()) << reg.status();
    return reg.ok() ? std::move(reg).value() : nullptr;
  }

  std::unique_ptr<LlmEngine> prefill_;
  std::unique_ptr<LlmEngine> decode_;
  std::unique_ptr<transfer::Backend> transfer_;
  std::unique_ptr<transfer::Registration> prefill_reg_;
  std::unique_ptr<transfer::Registration> decode_reg_;
  std::shared_ptr<KvPuller> puller_;
};

class KvPullTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cuda" && !CudaDeviceAvailable()) GTEST_SKIP() << "no cuda device";
  }
  BackendOptions Backend() const {
    BackendOptions b;
    b.backend = GetParam();
    return b;
  }
  static std::string Model() { return (GoldenDir() / "llama_gqa_f32").string(); }
};

// Greedy output through prefill → pull → decode equals one engine's, on every golden model, for
// a prompt the prefill engine computes in several chunks (and one shorter than a block).
TEST_P(KvPullTest, DecodeAfterPullGeneratesWhatOneEngineGenerates) {
  for (const std::string& name : GoldenModels()) {
    SCOPED_TRACE(name);
    const std::string model = (GoldenDir() / name).string();
    EngineOptions chunked;
    chunked.max_num_batched_tokens = 16;  // Several chunks per prompt.
    PdPair pd(model, Backend(), chunked);
    ASSERT_TRUE(pd.ok());
    const int bs = pd.decode().kv_layout().block_size;
    std::mt19937 rng(kSeed);
    for (int len : {5, 3 * bs + 5, 4 * bs}) {
      if (len + 8 > pd.decode().max_model_len()) continue;
      SCOPED_TRACE("prompt of " + std::to_string(len));
      const GenerateRequest r = Greedy(RandomPrompt(rng, len), 8);
      auto alone = MakeEngine(model, Backend());
      const Completion whole = RunAll(*alone, {r})[0];
      ASSERT_EQ(whole.tokens.size(), 8u);

      const int64_t pulls = pd.decode().stats().kv_pulls;
      const int64_t bytes = pd.decode().stats().kv_pulled_bytes;
      const auto [first, source] = pd.Prefill(r);
      EXPECT_EQ(first, whole.tokens[0]);
      const Completion rest = RunAll(pd.decode(), {PdPair::DecodeRequest(r, first, source)})[0];
      ASSERT_TRUE(rest.error.ok()) << rest.error;
      EXPECT_EQ(rest.tokens, std::vector<int32_t>(whole.tokens.begin() + 1, whole.tokens.end()));
      // A prompt shorter than a block is computed rather than pulled.
      const bool pulled = len >= bs;
      const EngineStats d = pd.decode().stats();
      EXPECT_EQ(d.kv_pulls, pulls + (pulled ? 1 : 0));
      EXPECT_EQ(d.kv_pulled_bytes - bytes,
                pulled ? static_cast<int64_t>(source.handle.block_ids.size() *
                                              pd.decode().kv_layout().BlockBytes())
                       : 0);
      EXPECT_EQ(d.kv_pull_recomputes, 0);
      pd.ExpectNoLeaks();
    }
  }
}

// What the decode engine caches already is not pulled: only the blocks after its own prefix.
TEST_P(KvPullTest, OnlyTheBlocksMissingFromTheDecodeCacheArePulled) {
  PdPair pd(Model(), Backend(), {});
  ASSERT_TRUE(pd.ok());
  const int bs = pd.decode().kv_layout().block_size;
  std::mt19937 rng(kSeed + 1);
  const std::vector<int32_t> shared = RandomPrompt(rng, 2 * bs);
  std::vector<int32_t> prompt = shared;
  for (int32_t t : RandomPrompt(rng, 2 * bs + 3)) prompt.push_back(t);
  RunAll(pd.decode(), {Greedy(shared, 2)});  // The decode engine caches the first 2 blocks.

  const GenerateRequest r = Greedy(prompt, 6);
  auto alone = MakeEngine(Model(), Backend());
  const Completion whole = RunAll(*alone, {r})[0];
  const auto [first, source] = pd.Prefill(r);
  ASSERT_EQ(source.handle.block_ids.size(), 5u);
  const Completion rest = RunAll(pd.decode(), {PdPair::DecodeRequest(r, first, source)})[0];
  EXPECT_EQ(rest.tokens, std::vector<int32_t>(whole.tokens.begin() + 1, whole.tokens.end()));
  EXPECT_EQ(rest.cached_prompt_tokens, 2 * bs);
  const EngineStats d = pd.decode().stats();
  EXPECT_EQ(d.kv_pulls, 1);
  EXPECT_EQ(d.kv_pulled_bytes, static_cast<int64_t>(3 * pd.decode().kv_layout().BlockBytes()));
  pd.ExpectNoLeaks();

  // Now it holds the pulled full blocks too: the same prompt again pulls nothing (its partial
  // last block is computed) and releases the new lease at once.
  const auto [first2, source2] = pd.Prefill(r);
  const Completion again = RunAll(pd.decode(), {PdPair::DecodeRequest(r, first2, source2)})[0];
  EXPECT_EQ(again.tokens, rest.tokens);
  EXPECT_EQ(pd.decode().stats().kv_pulls, 1);
  pd.ExpectNoLeaks();
}

// Everything in a source comes from a peer: each bad one is prefilled locally, same tokens, and
// counted; the leases it names end released or expired, and no block leaks.
TEST_P(KvPullTest, ABadSourceIsRecomputedWithTheSameTokens) {
  kvcache::ManualClock clock;
  EngineOptions prefill_options;
  prefill_options.clock = &clock;
  prefill_options.kv_lease_ttl = std::chrono::milliseconds(5000);
  PdPair pd(Model(), Backend(), prefill_options);
  ASSERT_TRUE(pd.ok());
  std::mt19937 rng(kSeed + 2);
  const GenerateRequest request = Greedy(RandomPrompt(rng, 3 * 16 + 7), 6);
  auto alone = MakeEngine(Model(), Backend());
  const Completion whole = RunAll(*alone, {request})[0];
  const std::vector<int32_t> expected(whole.tokens.begin() + 1, whole.tokens.end());

  struct Case {
    std::string name;
    std::function<void(KvSource&)> spoil;
  };
  const std::vector<Case> cases = {
      {"unknown lease", [](KvSource& s) { s.handle.lease_id ^= 1; }},
      {"blocks out of the lease's order",
       [](KvSource& s) { std::swap(s.handle.block_ids[0], s.handle.block_ids[1]); }},
      {"a block not the lease's", [](KvSource& s) { s.handle.block_ids[1] += 100; }},
      {"block outside the pool", [](KvSource& s) { s.handle.block_ids.back() = 1 << 30; }},
      {"negative block", [](KvSource& s) { s.handle.block_ids[0] = -1; }},
      {"too many tokens", [](KvSource& s) { s.handle.num_tokens = 1 << 20; }},
      {"wrong block count", [](KvSource& s) { s.handle.block_ids.pop_back(); }},
      {"other layout", [](KvSource& s) { s.layout.num_kv_heads += 1; }},
      {"expired on arrival", [](KvSource& s) { s.handle.expires_in_ms = 0; }},
      {"other backend", [](KvSource& s) { s.transfer_backend = "nccl"; }},
      {"bad descriptor", [](KvSource& s) { s.transfer_descriptor = "not a descriptor"; }},
      {"lease expired before the pull", [&](KvSource&) { clock.Advance(6'000'000'000); }},
  };
  int64_t recomputes = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    // A salt of its own: what an earlier case left in the decode cache is not found.
    GenerateRequest r = request;
    r.cache_salt = c.name;
    auto [first, source] = pd.Prefill(r);
    KvSource spoiled = source;
    c.spoil(spoiled);
    const Completion rest = RunAll(pd.decode(), {PdPair::DecodeRequest(r, first, spoiled)})[0];
    ASSERT_TRUE(rest.error.ok()) << rest.error;
    EXPECT_EQ(rest.tokens, expected);
    EXPECT_EQ(pd.decode().stats().kv_pull_recomputes, ++recomputes);
    EXPECT_EQ(pd.decode().stats().kv_pulls, 0);
    // Whatever the spoiled source named, the real lease goes: released here, or expired.
    pd.prefill().ReleaseKv(source.handle.lease_id, {}, nullptr);
    clock.Advance(6'000'000'000);
    pd.ExpectNoLeaks();
  }
}

// A request cancelled while its pull is in flight ends as cancelled; its lease is released and
// its blocks come back (the mock's simulated pull is slow enough to be caught).
TEST(KvPullMockTest, CancelDuringAPullReleasesTheLeaseAndTheBlocks) {
  BackendOptions mock;
  mock.backend = "mock";
  // 25 blocks of 4 KiB at 1 MB/s: about 100 ms.
  PdPair pd((GoldenDir() / "llama_gqa_f32").string(), mock, {}, 1e6);
  ASSERT_TRUE(pd.ok());
  std::mt19937 rng(kSeed + 3);
  const GenerateRequest r = Greedy(RandomPrompt(rng, 400), 4);
  const auto [first, source] = pd.Prefill(r);
  auto submitted = pd.decode().Submit(PdPair::DecodeRequest(r, first, source));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  ASSERT_TRUE(WaitUntil(
      [&] { return pd.decode().stats().blocks_available < pd.decode().stats().blocks_total; }));
  pd.decode().Cancel(submitted->first);
  const Completion c = Collect(*submitted->second);
  EXPECT_EQ(c.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(pd.decode().stats().kv_pulls, 0);
  pd.ExpectNoLeaks();

  // Uncancelled, the simulated pull completes and the mock generates what it does alone.
  auto alone = MakeEngine((GoldenDir() / "llama_gqa_f32").string(), mock);
  const Completion whole = RunAll(*alone, {r})[0];
  const auto [first2, source2] = pd.Prefill(r);
  const Completion rest = RunAll(pd.decode(), {PdPair::DecodeRequest(r, first2, source2)})[0];
  EXPECT_EQ(rest.tokens, std::vector<int32_t>(whole.tokens.begin() + 1, whole.tokens.end()));
  EXPECT_EQ(pd.decode().stats().kv_pulls, 1);
  pd.ExpectNoLeaks();
}

INSTANTIATE_TEST_SUITE_P(Backends, KvPullTest, ::testing::ValuesIn(TestBackends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tandem::engine::testing
