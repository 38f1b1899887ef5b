// The mock backend (issue 15): its timing model against the formula, its profile file, its
// account of slip under a fake clock, and its determinism inside the real engine.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/file_util.h"
#include "engine/mock/mock_model_runner.h"
#include "engine/mock/timing_model.h"
#include "engine_test_util.h"

namespace tandem::engine::mock {
namespace {

using ::tandem::engine::testing::Greedy;
using ::tandem::engine::testing::RunAll;

SequenceStep Step(const std::vector<int32_t>& tokens, int64_t start) {
  SequenceStep s;
  s.tokens = tokens;
  s.start_pos = start;
  s.logits_from = static_cast<int>(tokens.size());
  return s;
}

TEST(MockTimingTest, ShapeCountsDecodeAndPrefillTokens) {
  const std::vector<int32_t> one = {7}, chunk(50, 7);
  const std::vector<SequenceStep> batch = {Step(one, 511), Step(one, 99), Step(chunk, 100)};
  const StepShape shape = ShapeOf(batch);
  EXPECT_EQ(shape.decode_seqs, 2);
  EXPECT_EQ(shape.decode_context, 512 + 100);
  EXPECT_EQ(shape.prefill_tokens, 50);
  // Token i of the chunk attends to 100 + i + 1 tokens.
  EXPECT_DOUBLE_EQ(shape.prefill_token_context, 50.0 * 100 + 50.0 * 51 / 2);
}

TEST(MockTimingTest, StepTimeFollowsTheFormula) {
  const MockProfile p;
  // Decode only: 64 sequences of 512 tokens.
  StepShape decode{.decode_seqs = 64, .decode_context = 64 * 512};
  EXPECT_NEAR(StepSeconds(p, decode),
              p.decode_fixed_ms * 1e-3 + 64 * p.decode_per_seq_us * 1e-6 +
                  64 * 512 * p.decode_per_context_token_ns * 1e-9,
              1e-12);
  // Prefill only: 2,048 tokens from position 0.
  StepShape prefill{.prefill_tokens = 2048, .prefill_token_context = 2048.0 * 2049 / 2};
  EXPECT_NEAR(StepSeconds(p, prefill),
              p.prefill_fixed_ms * 1e-3 + 2048 * p.prefill_per_token_us * 1e-6 +
                  2048.0 * 2049 / 2 * p.prefill_per_token_context_ns * 1e-9,
              1e-12);
  // Mixed: one fixed cost (the larger), both variable parts.
  StepShape mixed = prefill;
  mixed.decode_seqs = decode.decode_seqs;
  mixed.decode_context = decode.decode_context;
  EXPECT_NEAR(StepSeconds(p, mixed),
              StepSeconds(p, decode) + StepSeconds(p, prefill) - p.prefill_fixed_ms * 1e-3, 1e-12);
  EXPECT_EQ(StepSeconds(p, StepShape{}), 0.0);
}

TEST(MockTimingTest, DefaultsReproduceTheMeasuredH200Steps) {
  // The cuda backend's measured Llama-3.1-8B rows (bench/results/engine_gpu_report.md).
  const MockProfile p;
  struct Row {
    int batch, context;
    double ms;
  };
  for (const Row r : {Row{1, 512, 4.62}, Row{64, 512, 6.71}, Row{128, 4096, 29.58}}) {
    const StepShape s{.decode_seqs = r.batch, .decode_context = int64_t{r.batch} * r.context};
    EXPECT_NEAR(StepSeconds(p, s) * 1e3, r.ms, 0.07 * r.ms) << r.batch << "@" << r.context;
  }
  const StepShape pre{.prefill_tokens = 2048, .prefill_token_context = 2048.0 * 2048 / 2};
  EXPECT_NEAR(StepSeconds(p, pre) * 1e3, 53.92, 0.5);
}

TEST(MockTimingTest, CommittedProfileFileMatchesTheDefaults) {
  const auto path = std::filesystem::path(TANDEM_SOURCE_DIR) /
                    "bench/results/mock_profile_llama-3.1-8b_h200.json";
  auto loaded = LoadMockProfile(path.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const MockProfile d;
  EXPECT_NEAR(loaded->prefill_fixed_ms, d.prefill_fixed_ms, 1e-3);
  EXPECT_NEAR(loaded->prefill_per_token_us, d.prefill_per_token_us, 1e-3);
  EXPECT_NEAR(loaded->prefill_per_token_context_ns, d.prefill_per_token_context_ns, 1e-3);
  EXPECT_NEAR(loaded->decode_fixed_ms, d.decode_fixed_ms, 1e-3);
  EXPECT_NEAR(loaded->decode_per_seq_us, d.decode_per_seq_us, 1e-3);
  EXPECT_NEAR(loaded->decode_per_context_token_ns, d.decode_per_context_token_ns, 1e-3);
}

TEST(MockProfileTest, FieldsLeftOutKeepTheirDefaults) {
  auto p = ParseMockProfile(R"({"name": "slow", "decode_fixed_ms": 10, "_note": "x"})");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->name, "slow");
  EXPECT_EQ(p->decode_fixed_ms, 10);
  EXPECT_EQ(p->prefill_per_token_us, MockProfile().prefill_per_token_us);
}

TEST(MockProfileTest, BadFilesAreRefusedNamingTheKey) {
  for (const auto& [text, want] : std::vector<std::pair<std::string, std::string>>{
           {R"({"decode_fixed": 1})", "unknown key 'decode_fixed'"},
           {R"({"decode_fixed_ms": -1})", "'decode_fixed_ms' must be a number >= 0"},
           {R"({"decode_fixed_ms": "5"})", "'decode_fixed_ms' must be a number >= 0"},
           {R"([1, 2])", "expected a JSON object"},
           {R"({"decode_fixed_ms": )", "expected a JSON object"}}) {
    auto p = ParseMockProfile(text);
    ASSERT_FALSE(p.ok()) << text;
    EXPECT_NE(p.status().message().find(want), std::string::npos) << p.status().message();
  }
  EXPECT_FALSE(LoadMockProfile("/nonexistent/profile.json").ok());
}

// A clock that sleeps by jumping, overshooting each sleep by `late_ns`.
class FakeTime final : public MockTime {
 public:
  int64_t NowNanos() override { return now_; }
  void SleepUntil(int64_t nanos) override { now_ = std::max(now_, nanos) + late_ns; }
  int64_t now_ = 1'000'000'000;
  int64_t late_ns = 0;
};

model::ModelConfig DemoConfig() {
  auto config = model::BuiltinModelConfig("demo");
  EXPECT_TRUE(config.ok());
  return *config;
}

TEST(MockRunnerTest, StepLastsThePredictedTimeDividedBySpeedup) {
  FakeTime time;
  MockRunnerOptions options{.num_blocks = 64, .speedup = 4.0, .time = &time};
  auto runner = MockModelRunner::Create(DemoConfig(), options);
  ASSERT_TRUE(runner.ok());
  const std::vector<int32_t> one = {5};
  std::vector<SequenceStep> batch = {Step(one, 300), Step(one, 20)};
  const double want = StepSeconds(options.profile, ShapeOf(batch)) / 4.0;
  std::vector<SequenceResult> results;
  const int64_t before = time.now_;
  ASSERT_TRUE((*runner)->Execute(batch, &results).ok());
  EXPECT_NEAR((time.now_ - before) * 1e-9, want, 1e-9);
  const auto stats = (*runner)->simulation_stats();
  ASSERT_TRUE(stats.has_value());
  EXPECT_NEAR(stats->expected_seconds, want, 1e-9);
  EXPECT_NEAR(stats->actual_seconds, want, 1e-9);
  EXPECT_EQ(stats->steps, 1);
}

TEST(MockRunnerTest, LateWakeUpsArePaidBackAndWhatRemainsIsSlip) {
  FakeTime time;
  MockRunnerOptions options{.num_blocks = 64, .time = &time};
  auto runner = MockModelRunner::Create(DemoConfig(), options);
  ASSERT_TRUE(runner.ok());
  const std::vector<int32_t> one = {5};
  const std::vector<SequenceStep> batch = {Step(one, 10)};
  const auto step_ns = static_cast<int64_t>(StepSeconds(options.profile, ShapeOf(batch)) * 1e9);
  std::vector<SequenceResult> results;
  // One step wakes 1 ms late; the next ones wake on time and end early until it is paid back.
  time.late_ns = 1'000'000;
  ASSERT_TRUE((*runner)->Execute(batch, &results).ok());
  time.late_ns = 0;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*runner)->Execute(batch, &results).ok());
  auto stats = (*runner)->simulation_stats();
  EXPECT_NEAR(stats->actual_seconds, stats->expected_seconds, 1e-9);
  EXPECT_NEAR(stats->expected_seconds, 4 * step_ns * 1e-9, 1e-8);
  // A machine too busy to keep up: every step wakes 1 ms late; that is slip.
  time.late_ns = 1'000'000;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE((*runner)->Execute(batch, &results).ok());
  stats = (*runner)->simulation_stats();
  EXPECT_GT(stats->actual_seconds - stats->expected_seconds, 1e-3);
}

TEST(MockRunnerTest, TokensArePureFunctionsOfSeedAndContextAndNeverEos) {
  model::ModelConfig config = DemoConfig();
  config.eos_token_ids = {2};
  MockRunnerOptions options{.num_blocks = 8, .seed = 7};
  auto a = MockModelRunner::Create(config, options);
  auto b = MockModelRunner::Create(config, options);
  options.seed = 8;
  auto c = MockModelRunner::Create(config, options);
  std::set<int32_t> seen;
  int differ = 0;
  for (int32_t i = 0; i < 2000; ++i) {
    const std::vector<int32_t> prompt = {1, i, i * 3};
    const int32_t t = (*a)->NextToken(prompt, {});
    EXPECT_EQ(t, (*b)->NextToken(prompt, {}));
    EXPECT_NE(t, 2);
    EXPECT_GE(t, 0);
    EXPECT_LT(t, config.vocab_size);
    differ += t != (*c)->NextToken(prompt, {});
    seen.insert(t);
  }
  EXPECT_GT(differ, 1900);       // Another seed, other tokens.
  EXPECT_GT(seen.size(), 300u);  // Spread over the vocabulary.
}

// The whole engine on the mock: real scheduler, pool, prefix cache and events.
class MockEngineTest : public ::testing::Test {
 protected:
  // Steps of microseconds by default.
  std::unique_ptr<LlmEngine> Make(uint64_t seed, int num_blocks = 0, double speedup = 1000) {
    BackendOptions backend;
    backend.backend = "mock";
    backend.num_blocks = num_blocks;
    backend.mock_speedup = speedup;
    backend.mock_seed = seed;
    auto engine = CreateEngine({.model = "builtin:demo"}, backend, EngineOptions());
    EXPECT_TRUE(engine.ok()) << engine.status().ToString();
    return std::move(engine).value();
  }
  static std::vector<GenerateRequest> Requests() {
    std::vector<GenerateRequest> requests;
    for (int i = 0; i < 6; ++i) {
      std::vector<int32_t> prompt;
      for (int j = 0; j < 20 + 37 * i; ++j) prompt.push_back(3 + (j * 7 + i) % 400);
      GenerateRequest r = Greedy(prompt, 10 + 5 * i);
      r.sampling.ignore_eos = true;
      requests.push_back(r);
    }
    return requests;
  }
};

TEST_F(MockEngineTest, RunsAreReproducibleWhateverTheBatching) {
  const auto requests = Requests();
  auto batched = Make(42);
  const auto together = RunAll(*batched, requests);
  auto alone_engine = Make(42, /*num_blocks=*/0);
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto alone = RunAll(*alone_engine, {requests[i]});
    ASSERT_TRUE(together[i].error.ok()) << together[i].error.ToString();
    EXPECT_EQ(alone[0].tokens, together[i].tokens) << "request " << i;
    EXPECT_EQ(static_cast<int>(together[i].tokens.size()), requests[i].sampling.max_tokens);
    EXPECT_EQ(together[i].finish_reason, FinishReason::kLength);
  }
  auto other_seed = Make(43);
  EXPECT_NE(RunAll(*other_seed, {requests[3]})[0].tokens, together[3].tokens);
}

TEST_F(MockEngineTest, PreemptionUnderATightPoolChangesNothing) {
  const auto requests = Requests();
  auto roomy = Make(5);
  // Real-time steps (milliseconds): every request is in before the first step ends, so they
  // contend for the pool however busy the machine is.
  auto tight = Make(5, /*num_blocks=*/24, /*speedup=*/1);
  const auto want = RunAll(*roomy, requests);
  const auto got = RunAll(*tight, requests);
  for (size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(got[i].tokens, want[i].tokens) << i;
  EXPECT_GT(tight->stats().preemptions, 0);
}

TEST_F(MockEngineTest, PrefixCacheAndKvEventsAreReal) {
  auto engine = Make(1);
  GenerateRequest r = Requests()[4];  // 168 tokens: 10 full blocks.
  RunAll(*engine, {r});
  const auto again = RunAll(*engine, {r});
  EXPECT_EQ(again[0].cached_prompt_tokens, 160);
  const auto events = engine->kv_events().Read(1);
  EXPECT_FALSE(events.events.empty());
  const auto stats = engine->stats();
  ASSERT_TRUE(stats.simulation.has_value());
  EXPECT_GT(stats.simulation->steps, 0);
  EXPECT_GT(stats.simulation->expected_seconds, 0);
}

}  // namespace
}  // namespace tandem::engine::mock
