// The cuda backend against Hugging Face transformers (tests/data/golden) and against the cpu
// backend, its oracle (issue 5): prompt logits within bf16 tolerance (max |Δ| / max |ref| ≤ 2e-2,
// top-1 agreement on ≥ 99% of the decisive positions), also through chunked prefill, and greedy
// continuations equal wherever the golden run's smallest top-2 logit gap leaves room for bf16
// noise. Skips without a device. Prints one summary line per model (grep "cuda-golden").
//
// "Decisive" positions are those whose reference top-2 gap exceeds kMinGap. The random tiny golden
// models have near-ties (gaps of 1e-3) that bf16 rounding legitimately flips; the raw agreement
// over all positions is printed too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine_test_util.h"
#include "model/safetensors.h"

namespace tandem::engine::testing {
namespace {

constexpr double kMaxRelError = 2e-2;
constexpr double kMinTop1 = 0.99;
// Greedy tokens must match only where every step's top-2 gap (in HF's fp32 logits) exceeds
// this: bf16 rounding moves logits by a few hundredths.
constexpr double kMinGap = 0.05;

struct Agreement {
  double max_rel_error = 0;  // max over prompts of max |Δ| / max |ref|
  int top1_equal = 0;
  int positions = 0;
  int decisive_equal = 0;  // top-1 equal where the reference's top-2 gap > kMinGap
  int decisive = 0;
  double max_flip_gap = 0;  // largest reference top-2 gap at a position whose top-1 differs
  double decisive_top1() const {
    return decisive == 0 ? 1.0 : static_cast<double>(decisive_equal) / decisive;
  }
};

void Accumulate(const std::vector<float>& got, const std::vector<float>& ref, int rows,
                Agreement* a) {
  ASSERT_EQ(got.size(), ref.size());
  ASSERT_GT(rows, 0);
  const size_t vocab = ref.size() / rows;
  float max_ref = 0, max_err = 0;
  for (size_t k = 0; k < ref.size(); ++k) {
    ASSERT_FALSE(std::isnan(got[k])) << "NaN logit at " << k;
    max_ref = std::max(max_ref, std::abs(ref[k]));
    max_err = std::max(max_err, std::abs(ref[k] - got[k]));
  }
  a->max_rel_error = std::max(a->max_rel_error, static_cast<double>(max_err / max_ref));
  for (int r = 0; r < rows; ++r) {
    const auto row = [&](const std::vector<float>& v) { return v.begin() + r * vocab; };
    const auto g = std::max_element(row(got), row(got) + vocab) - row(got);
    const auto e = std::max_element(row(ref), row(ref) + vocab) - row(ref);
    float second = -INFINITY;
    for (size_t v = 0; v < vocab; ++v) {
      if (static_cast<ptrdiff_t>(v) != e) second = std::max(second, row(ref)[v]);
    }
    const double gap = row(ref)[e] - second;
    a->top1_equal += g == e;
    ++a->positions;
    if (gap > kMinGap) {
      a->decisive_equal += g == e;
      ++a->decisive;
    }
    if (g != e) a->max_flip_gap = std::max(a->max_flip_gap, gap);
  }
}

class CudaGoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!CudaDeviceAvailable()) GTEST_SKIP() << "no cuda device";
  }
  std::string dir() const { return (GoldenDir() / GetParam()).string(); }
  nlohmann::json golden() const {
    std::ifstream in(GoldenDir() / GetParam() / "golden.json");
    return nlohmann::json::parse(in);
  }
  static BackendOptions Backend(const std::string& name) {
    BackendOptions b;
    b.backend = name;
    return b;
  }
  std::vector<std::vector<int32_t>> Prompts() const {
    return golden()["prompts"].get<std::vector<std::vector<int32_t>>>();
  }
  // Every prompt's logits at every position.
  std::vector<Completion> PromptLogitsOf(LlmEngine& engine) const {
    std::vector<GenerateRequest> requests;
    for (const auto& p : Prompts()) {
      GenerateRequest r = Greedy(p, 1);
      r.prompt_logits = PromptLogits::kAll;
      requests.push_back(r);
    }
    return RunAll(engine, requests);
  }
  std::vector<float> Reference(int i) const {
    auto ref = model::SafetensorsFile::Open(GoldenDir() / GetParam() / "reference.safetensors");
    EXPECT_TRUE(ref.ok()) << ref.status();
    if (!ref.ok()) return {};
    auto view = (*ref)->Tensor("logits." + std::to_string(i));
    EXPECT_TRUE(view.ok()) << view.status();
    if (!view.ok()) return {};
    std::vector<float> out(view->NumElements());
    model::ConvertToF32(*view, out);
    return out;
  }
};

TEST_P(CudaGoldenTest, LogitsMatchTransformersAndCpu) {
  auto cuda = MakeEngine(dir(), Backend("cuda"));
  auto cpu = MakeEngine(dir(), Backend("cpu"));
  ASSERT_NE(cuda, nullptr);
  ASSERT_NE(cpu, nullptr);
  const auto got = PromptLogitsOf(*cuda);
  const auto oracle = PromptLogitsOf(*cpu);
  const auto prompts = Prompts();
  ASSERT_EQ(got.size(), prompts.size());
  ASSERT_EQ(oracle.size(), prompts.size());
  Agreement vs_hf, vs_cpu;
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE("prompt " + std::to_string(i));
    const int rows = static_cast<int>(prompts[i].size());
    ASSERT_EQ(got[i].logits_rows, rows);
    Accumulate(got[i].logits, Reference(static_cast<int>(i)), rows, &vs_hf);
    Accumulate(got[i].logits, oracle[i].logits, rows, &vs_cpu);
  }
  std::printf(
      "cuda-golden %-24s logits  rel_err hf %.2e cpu %.2e | top1 hf %d/%d (decisive "
      "%d/%d, flips at gap <= %.4f) cpu %d/%d (decisive %d/%d)\n",
      GetParam().c_str(), vs_hf.max_rel_error, vs_cpu.max_rel_error, vs_hf.top1_equal,
      vs_hf.positions, vs_hf.decisive_equal, vs_hf.decisive, vs_hf.max_flip_gap, vs_cpu.top1_equal,
      vs_cpu.positions, vs_cpu.decisive_equal, vs_cpu.decisive);
  EXPECT_LE(vs_hf.max_rel_error, kMaxRelError);
  EXPECT_LE(vs_cpu.max_rel_error, kMaxRelError);
  EXPECT_GE(vs_hf.decisive_top1(), kMinTop1);
  EXPECT_GE(vs_cpu.decisive_top1(), kMinTop1);
}

TEST_P(CudaGoldenTest, ChunkedPrefillMatchesTransformers) {
  // As in golden_test: dynamic NTK legitimately differs from a one-pass forward when chunked.
  if (GetParam().find("dynamic") != std::string::npos) GTEST_SKIP() << "dynamic rope";
  EngineOptions options;
  options.max_num_batched_tokens = 20;  // 135 tokens run in 7 chunks, batched with the others.
  auto cuda = MakeEngine(dir(), Backend("cuda"), options);
  ASSERT_NE(cuda, nullptr);
  const auto got = PromptLogitsOf(*cuda);
  const auto prompts = Prompts();
  ASSERT_EQ(got.size(), prompts.size());
  Agreement vs_hf;
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE("prompt " + std::to_string(i));
    ASSERT_EQ(got[i].logits_rows, static_cast<int>(prompts[i].size()));
    Accumulate(got[i].logits, Reference(static_cast<int>(i)), got[i].logits_rows, &vs_hf);
  }
  std::printf("cuda-golden %-24s chunked rel_err hf %.2e | top1 hf %d/%d (decisive %d/%d)\n",
              GetParam().c_str(), vs_hf.max_rel_error, vs_hf.top1_equal, vs_hf.positions,
              vs_hf.decisive_equal, vs_hf.decisive);
  EXPECT_LE(vs_hf.max_rel_error, kMaxRelError);
  EXPECT_GE(vs_hf.decisive_top1(), kMinTop1);
}

TEST_P(CudaGoldenTest, GreedyTokensMatchTransformersAndCpuWhereGapAllows) {
  auto cuda = MakeEngine(dir(), Backend("cuda"));
  auto cpu = MakeEngine(dir(), Backend("cpu"));
  ASSERT_NE(cuda, nullptr);
  ASSERT_NE(cpu, nullptr);
  // Keep the parsed file alive: iterating golden()["greedy"] directly would range over a member
  // of a destroyed temporary.
  const nlohmann::json file = golden();
  ASSERT_FALSE(file["greedy"].empty());
  int g_index = 0;
  for (const auto& g : file["greedy"]) {
    const auto prompt = g["prompt"].get<std::vector<int32_t>>();
    const auto expected = g["tokens"].get<std::vector<int32_t>>();
    const double gap = g["min_top2_gap"].get<double>();
    const auto got = RunAll(*cuda, {Greedy(prompt, 24)});
    const auto oracle = RunAll(*cpu, {Greedy(prompt, 24)});
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(oracle.size(), 1u);
    const auto prefix = [&](const std::vector<int32_t>& a) {
      size_t n = 0;
      while (n < a.size() && n < expected.size() && a[n] == expected[n]) ++n;
      return n;
    };
    const bool required = gap > kMinGap;
    std::printf("cuda-golden %-24s greedy%d gap %.4f %s  hf %s (%zu/24 agree)  cpu %s\n",
                GetParam().c_str(), g_index, gap, required ? "required" : "info    ",
                got[0].tokens == expected ? "match" : "DIFF ", prefix(got[0].tokens),
                got[0].tokens == oracle[0].tokens ? "match" : "DIFF");
    EXPECT_EQ(got[0].tokens.size(), 24u);
    if (required) {
      EXPECT_EQ(got[0].tokens, expected) << "greedy " << g_index;
      EXPECT_EQ(got[0].tokens, oracle[0].tokens) << "greedy " << g_index;
    }
    ++g_index;
  }
}

// Against Hugging Face run in bf16 (greedy_bf16, written by scripts/make_golden.py
// --only-bf16-greedy on the GPU machine): the tokens must be equal through every step whose
// top-2 gap in HF's bf16 logits exceeds kMinGap; from the first closer step on the two bf16
// computations (HF rounds its residual stream to bf16, tandem keeps it fp32) may legitimately part.
TEST_P(CudaGoldenTest, GreedyTokensMatchTransformersInBf16) {
  const nlohmann::json file = golden();
  if (!file.contains("greedy_bf16")) GTEST_SKIP() << "no greedy_bf16 references in golden.json";
  auto cuda = MakeEngine(dir(), Backend("cuda"));
  ASSERT_NE(cuda, nullptr);
  int g_index = 0;
  int equal_runs = 0;
  for (const auto& g : file["greedy_bf16"]) {
    const auto prompt = g["prompt"].get<std::vector<int32_t>>();
    const auto expected = g["tokens"].get<std::vector<int32_t>>();
    const auto gaps = g["top2_gaps"].get<std::vector<double>>();
    ASSERT_EQ(gaps.size(), expected.size());
    const auto got = RunAll(*cuda, {Greedy(prompt, static_cast<int>(expected.size()))});
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0].tokens.size(), expected.size());
    size_t decisive = 0;  // steps before the first close call
    while (decisive < gaps.size() && gaps[decisive] > kMinGap) ++decisive;
    size_t agree = 0;
    while (agree < expected.size() && got[0].tokens[agree] == expected[agree]) ++agree;
    equal_runs += agree == expected.size();
    std::printf("cuda-golden %-24s greedy-bf16 %d: %zu/%zu equal, first close step %zu\n",
                GetParam().c_str(), g_index, agree, expected.size(), decisive);
    EXPECT_GE(agree, decisive) << "greedy " << g_index;
    ++g_index;
  }
  std::printf("cuda-golden %-24s greedy-bf16 fully equal %d/%d\n", GetParam().c_str(), equal_runs,
              g_index);
}

INSTANTIATE_TEST_SUITE_P(Models, CudaGoldenTest, ::testing::ValuesIn(GoldenModels()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tandem::engine::testing
