// The CPU backend against Hugging Face transformers (tests/data/golden, made by
// scripts/make_golden.py): logits for prompts of 1 to 135 tokens and 24-token greedy
// continuations, on a small random model of every supported family and variant.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine_test_util.h"
#include "model/safetensors.h"

namespace tandem::engine::testing {
namespace {

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return (GoldenDir() / GetParam()).string(); }
  nlohmann::json golden() const {
    std::ifstream in(GoldenDir() / GetParam() / "golden.json");
    return nlohmann::json::parse(in);
  }

  // max |logit - reference| / max |reference| over every position of every golden prompt.
  void ExpectLogitsMatch(LlmEngine& engine) {
    auto ref = model::SafetensorsFile::Open(GoldenDir() / GetParam() / "reference.safetensors");
    ASSERT_TRUE(ref.ok()) << ref.status();
    const auto prompts = golden()["prompts"].get<std::vector<std::vector<int32_t>>>();
    std::vector<GenerateRequest> requests;
    for (const auto& p : prompts) {
      GenerateRequest r = Greedy(p, 1);
      r.prompt_logits = PromptLogits::kAll;
      requests.push_back(r);
    }
    const auto done = RunAll(engine, requests);
    ASSERT_EQ(done.size(), prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto view = (*ref)->Tensor("logits." + std::to_string(i));
      ASSERT_TRUE(view.ok()) << view.status();
      std::vector<float> expected(view->NumElements());
      model::ConvertToF32(*view, expected);
      ASSERT_EQ(done[i].logits_rows, static_cast<int>(prompts[i].size()));
      ASSERT_EQ(done[i].logits.size(), expected.size());
      float max_ref = 0, max_err = 0;
      for (size_t k = 0; k < expected.size(); ++k) {
        max_ref = std::max(max_ref, std::abs(expected[k]));
        max_err = std::max(max_err, std::abs(expected[k] - done[i].logits[k]));
      }
      EXPECT_LE(max_err / max_ref, 1e-4)
          << "prompt " << i << " (" << prompts[i].size() << " tokens)";
    }
  }
};

TEST_P(GoldenTest, LogitsMatchTransformers) {
  auto engine = MakeEngine(dir());
  ASSERT_NE(engine, nullptr);
  ExpectLogitsMatch(*engine);
}

TEST_P(GoldenTest, GreedyTokensMatchTransformers) {
  auto engine = MakeEngine(dir());
  ASSERT_NE(engine, nullptr);
  // Keep the parsed file alive: iterating golden()["greedy"] directly would range over a member
  // of a destroyed temporary (the loop then silently checked nothing).
  const nlohmann::json file = golden();
  ASSERT_FALSE(file["greedy"].empty());
  for (const auto& g : file["greedy"]) {
    const auto done = RunAll(*engine, {Greedy(g["prompt"].get<std::vector<int32_t>>(), 24)});
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].tokens, g["tokens"].get<std::vector<int32_t>>());
    EXPECT_EQ(done[0].finish_reason, FinishReason::kLength);
  }
}

TEST_P(GoldenTest, ChunkedPrefillMatchesTransformers) {
  // Dynamic NTK rope rescales with the length a forward pass reaches, so a chunked prefill
  // legitimately differs from HF's one-pass forward once the prompt outgrows the trained context.
  if (GetParam().find("dynamic") != std::string::npos) GTEST_SKIP() << "dynamic rope";
  EngineOptions options;
  options.max_num_batched_tokens = 20;  // 135 tokens run in 7 chunks, batched with the others.
  auto engine = MakeEngine(dir(), {}, options);
  ASSERT_NE(engine, nullptr);
  ExpectLogitsMatch(*engine);
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenTest, ::testing::ValuesIn(GoldenModels()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tandem::engine::testing
