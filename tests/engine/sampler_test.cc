#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <span>
#include <vector>

namespace tandem::engine {
namespace {

constexpr uint64_t kSeed = 20240611;

std::vector<float> RandomLogits(int vocab, uint64_t seed, float scale = 3.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (float& x : logits) x = normal(rng);
  return logits;
}

int32_t ArgMax(const std::vector<float>& x) {
  return static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin());
}

std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double z = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) z += p[i] = std::exp((logits[i] - m) / temperature);
  for (double& v : p) v /= z;
  return p;
}

SamplingContext Context(const SamplingParams& params, std::span<const int32_t> prompt,
                        std::span<const int32_t> output, uint64_t seed) {
  return SamplingContext{
      .params = &params, .prompt_tokens = prompt, .output_tokens = output, .seed = seed};
}

// Samples with `params` at draw indices 0..n-1 (outputs of length i, all token 0, which only
// matters when penalties are on) and returns how often each token came up.
std::vector<int> Histogram(const std::vector<float>& logits, const SamplingParams& params,
                           uint64_t seed, int n) {
  std::vector<int32_t> outputs(static_cast<size_t>(n), 0);
  std::vector<int> counts(logits.size(), 0);
  std::vector<float> scratch;
  for (int i = 0; i < n; ++i) {
    const auto output = std::span<const int32_t>(outputs).first(static_cast<size_t>(i));
    ++counts[Sample(logits, Context(params, {}, output, seed), &scratch).token];
  }
  return counts;
}

GeneratedToken SampleOnce(const std::vector<float>& logits, const SamplingParams& params,
                          std::span<const int32_t> prompt = {},
                          std::span<const int32_t> output = {}, uint64_t seed = kSeed) {
  std::vector<float> scratch;
  return Sample(logits, Context(params, prompt, output, seed), &scratch);
}

SamplingParams Greedy() {
  SamplingParams params;
  params.temperature = 0.0f;
  return params;
}

// ---------------------------------------------------------------------------------------------
// UniformDraw

TEST(UniformDrawTest, IsInUnitIntervalAndDeterministic) {
  double sum = 0.0;
  constexpr int kDraws = 100000;
  for (int i = 0; i < kDraws; ++i) {
    const double u = UniformDraw(kSeed, static_cast<uint64_t>(i));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    ASSERT_EQ(u, UniformDraw(kSeed, static_cast<uint64_t>(i)));
    sum += u;
  }
  EXPECT_NEAR(sum / kDraws, 0.5, 0.005);
}

TEST(UniformDrawTest, DependsOnSeedAndIndex) {
  std::set<double> seen;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    for (uint64_t index = 0; index < 100; ++index) seen.insert(UniformDraw(seed, index));
  }
  EXPECT_EQ(seen.size(), 10000u);
}

// The CUDA sampler reproduces this function bit for bit: this pins the formula documented in
// sampler.cc.
TEST(UniformDrawTest, MatchesTheDocumentedFormula) {
  auto finalize = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  };
  // splitmix64 seeded with 0 has the well-known first output 0xE220A8397B1DCDAF.
  ASSERT_EQ(finalize(0x9E3779B97F4A7C15ULL), 0xE220A8397B1DCDAFULL);
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, kSeed, ~uint64_t{0}}) {
    for (uint64_t index : {uint64_t{0}, uint64_t{1}, uint64_t{1000}}) {
      const uint64_t bits = finalize(finalize(seed) + (index + 1) * 0x9E3779B97F4A7C15ULL);
      EXPECT_EQ(UniformDraw(seed, index), std::ldexp(static_cast<double>(bits >> 11), -53))
          << "seed=" << seed << " index=" << index;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Greedy and penalties

TEST(SamplerTest, GreedyPicksArgmax) {
  const std::vector<float> logits = RandomLogits(1000, kSeed);
  EXPECT_EQ(SampleOnce(logits, Greedy()).token, ArgMax(logits));
}

TEST(SamplerTest, GreedyBreaksTiesByLowestId) {
  EXPECT_EQ(SampleOnce({1.0f, 3.0f, 3.0f, 2.0f}, Greedy()).token, 1);
}

TEST(SamplerTest, NanAndNegativeInfinityAreNeverChosen) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> logits = {nan, -inf, -5.0f, nan};
  EXPECT_EQ(SampleOnce(logits, Greedy()).token, 2);
  EXPECT_EQ(SampleOnce(logits, SamplingParams()).token, 2);
}

TEST(SamplerTest, RepetitionPenaltyDividesPositiveLogits) {
  SamplingParams params = Greedy();
  params.repetition_penalty = 2.0f;
  const std::vector<int32_t> prompt = {0};
  // 2.0 / 2 = 1.0 < 1.5.
  EXPECT_EQ(SampleOnce({2.0f, 1.5f, -1.0f}, params, prompt).token, 1);
  // 4.0 / 2 = 2.0 > 1.5.
  EXPECT_EQ(SampleOnce({4.0f, 1.5f, -1.0f}, params, prompt).token, 0);
}

TEST(SamplerTest, RepetitionPenaltyMultipliesNegativeLogits) {
  SamplingParams params = Greedy();
  params.repetition_penalty = 2.0f;
  const std::vector<int32_t> output = {0};
  // -1.0 * 2 = -2.0 < -1.5.
  EXPECT_EQ(SampleOnce({-1.0f, -1.5f}, params, {}, output).token, 1);
}

TEST(SamplerTest, RepetitionPenaltyAppliesOncePerDistinctToken) {
  SamplingParams params = Greedy();
  params.repetition_penalty = 1.5f;
  const std::vector<int32_t> prompt = {0, 0, 0};
  const std::vector<int32_t> output = {0, 0};
  // Once: 2.0 / 1.5 = 1.333 > 1.2. Applied per occurrence it would drop far below.
  EXPECT_EQ(SampleOnce({2.0f, 1.2f}, params, prompt, output).token, 0);
}

TEST(SamplerTest, PresencePenaltyAppliesOncePerGeneratedToken) {
  SamplingParams params = Greedy();
  const std::vector<int32_t> output = {0, 0, 0};
  params.presence_penalty = 0.1f;  // 1.0 - 0.1 = 0.9 > 0.8 (not 1.0 - 0.3).
  EXPECT_EQ(SampleOnce({1.0f, 0.8f}, params, {}, output).token, 0);
  params.presence_penalty = 0.3f;  // 0.7 < 0.8.
  EXPECT_EQ(SampleOnce({1.0f, 0.8f}, params, {}, output).token, 1);
}

TEST(SamplerTest, FrequencyPenaltyScalesWithCount) {
  SamplingParams params = Greedy();
  params.frequency_penalty = 0.05f;
  const std::vector<int32_t> twice = {0, 1, 0};
  const std::vector<int32_t> five = {0, 0, 0, 0, 0};
  EXPECT_EQ(SampleOnce({1.0f, 0.8f, 0.0f}, params, {}, twice).token, 0);  // 0.90 vs 0.75.
  EXPECT_EQ(SampleOnce({1.0f, 0.8f, 0.0f}, params, {}, five).token, 1);   // 0.75 vs 0.80.
}

TEST(SamplerTest, PresenceAndFrequencyIgnorePromptTokens) {
  SamplingParams params = Greedy();
  params.presence_penalty = 2.0f;
  params.frequency_penalty = 2.0f;
  const std::vector<int32_t> prompt = {0, 0, 0, 0};
  EXPECT_EQ(SampleOnce({1.0f, 0.8f}, params, prompt).token, 0);
}

TEST(SamplerTest, PenaltiesCombine) {
  SamplingParams params = Greedy();
  params.repetition_penalty = 1.25f;
  params.presence_penalty = 0.1f;
  params.frequency_penalty = 0.05f;
  const std::vector<int32_t> prompt = {1};
  const std::vector<int32_t> output = {0, 0};
  // Token 0: 2.0 / 1.25 - 2 * 0.05 - 0.1 = 1.4; token 1: 1.875 / 1.25 = 1.5; token 2: 1.45.
  EXPECT_EQ(SampleOnce({2.0f, 1.875f, 1.45f}, params, prompt, output).token, 1);
}

// ---------------------------------------------------------------------------------------------
// Filters

TEST(SamplerTest, TopKOneEqualsGreedy) {
  SamplingParams params;
  params.top_k = 1;
  for (uint64_t trial = 0; trial < 50; ++trial) {
    const std::vector<float> logits = RandomLogits(2000, kSeed + trial, 0.5f);
    EXPECT_EQ(SampleOnce(logits, params, {}, {}, trial).token, ArgMax(logits)) << "trial=" << trial;
  }
}

TEST(SamplerTest, TopKBreaksTiesByLowestId) {
  SamplingParams params;
  params.top_k = 2;
  const std::vector<int> counts = Histogram({1.0f, 1.0f, 1.0f, 0.0f}, params, kSeed, 2000);
  EXPECT_GT(counts[0], 800);
  EXPECT_GT(counts[1], 800);
  EXPECT_EQ(counts[2], 0);
  EXPECT_EQ(counts[3], 0);
}

TEST(SamplerTest, TinyTopPEqualsGreedy) {
  SamplingParams params;
  params.top_p = 1e-6f;
  for (uint64_t trial = 0; trial < 50; ++trial) {
    const std::vector<float> logits = RandomLogits(2000, kSeed + trial, 0.5f);
    EXPECT_EQ(SampleOnce(logits, params, {}, {}, trial).token, ArgMax(logits)) << "trial=" << trial;
  }
}

TEST(SamplerTest, TopPKeepsSmallestPrefixReachingTheMass) {
  SamplingParams params;
  params.top_p = 0.7f;
  // Probabilities 0.5, 0.3, 0.2: 0.5 < 0.7 <= 0.8, so tokens 0 and 1 stay, renormalized.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  constexpr int kDraws = 20000;
  const std::vector<int> counts = Histogram(logits, params, kSeed, kDraws);
  EXPECT_EQ(counts[2], 0);
  EXPECT_NEAR(static_cast<double>(counts[0]) / kDraws, 0.625, 0.02);
  EXPECT_NEAR(static_cast<double>(counts[1]) / kDraws, 0.375, 0.02);
}

TEST(SamplerTest, MinPDropsUnlikelyTokens) {
  SamplingParams params;
  params.min_p = 0.2f;
  // Relative to the best: 1, e^-1 = 0.37, e^-2 = 0.14, e^-5 = 0.007.
  const std::vector<float> logits = {0.0f, -1.0f, -2.0f, -5.0f};
  constexpr int kDraws = 20000;
  const std::vector<int> counts = Histogram(logits, params, kSeed, kDraws);
  EXPECT_EQ(counts[2], 0);
  EXPECT_EQ(counts[3], 0);
  const double p0 = 1.0 / (1.0 + std::exp(-1.0));
  EXPECT_NEAR(static_cast<double>(counts[0]) / kDraws, p0, 0.02);
}

TEST(SamplerTest, MinPIsRelativeToTheTemperedDistribution) {
  SamplingParams params;
  params.min_p = 0.2f;
  params.temperature = 2.0f;
  // At T = 2 token 2 weighs e^-1 = 0.37 >= 0.2 and stays; token 3 (e^-2.5 = 0.08) goes.
  const std::vector<int> counts = Histogram({0.0f, -1.0f, -2.0f, -5.0f}, params, kSeed, 5000);
  EXPECT_GT(counts[2], 0);
  EXPECT_EQ(counts[3], 0);
}

// ---------------------------------------------------------------------------------------------
// Randomness

TEST(SamplerTest, SameSeedGivesSameTokens) {
  SamplingParams params;
  const std::vector<float> logits = RandomLogits(500, kSeed, 1.0f);
  std::vector<int32_t> a;
  std::vector<int32_t> b;
  std::vector<float> scratch;
  for (int i = 0; i < 200; ++i) {
    a.push_back(Sample(logits, Context(params, {}, a, 7), &scratch).token);
    b.push_back(Sample(logits, Context(params, {}, b, 7), &scratch).token);
  }
  EXPECT_EQ(a, b);
}

TEST(SamplerTest, DifferentSeedsGiveDifferentTokens) {
  SamplingParams params;
  const std::vector<float> logits = RandomLogits(500, kSeed, 1.0f);
  std::vector<int32_t> outputs(200, 0);
  int differing = 0;
  std::vector<float> scratch;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto prefix = std::span<const int32_t>(outputs).first(i);
    differing += Sample(logits, Context(params, {}, prefix, 1), &scratch).token !=
                 Sample(logits, Context(params, {}, prefix, 2), &scratch).token;
  }
  EXPECT_GT(differing, 150);
}

TEST(SamplerTest, EmpiricalDistributionMatchesTemperedSoftmax) {
  SamplingParams params;
  params.temperature = 0.7f;
  const std::vector<float> logits = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.5f, -1.0f, 0.25f};
  constexpr int kDraws = 20000;
  const std::vector<int> counts = Histogram(logits, params, kSeed, kDraws);
  const std::vector<double> expected = Softmax(logits, params.temperature);
  double max_diff = 0.0;
  double chi_square = 0.0;
  for (size_t t = 0; t < logits.size(); ++t) {
    const double observed = static_cast<double>(counts[t]) / kDraws;
    max_diff = std::max(max_diff, std::abs(observed - expected[t]));
    const double e = expected[t] * kDraws;
    chi_square += (counts[t] - e) * (counts[t] - e) / e;
  }
  EXPECT_LT(max_diff, 0.02) << "seed=" << kSeed;
  // 7 degrees of freedom: P(chi2 > 24.3) = 0.001.
  EXPECT_LT(chi_square, 24.3) << "seed=" << kSeed;
}

// A vocabulary large enough to take the heap and quickselect paths, with a flat distribution
// (the crossing lies deep, past the head) and a peaked one (it lies in the head).
TEST(SamplerTest, EmpiricalDistributionMatchesOnLargeVocabulary) {
  for (float scale : {0.05f, 4.0f}) {
    const std::vector<float> logits = RandomLogits(4096, kSeed, scale);
    SamplingParams params;
    constexpr int kDraws = 10000;
    const std::vector<int> counts = Histogram(logits, params, kSeed, kDraws);
    const std::vector<double> expected = Softmax(logits, 1.0);
    // Compare the mass of 16 buckets of tokens ranked by probability.
    std::vector<int32_t> order(logits.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
    std::sort(order.begin(), order.end(),
              [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    double max_diff = 0.0;
    const size_t bucket = order.size() / 16;
    for (size_t start = 0; start < order.size(); start += bucket) {
      double observed = 0.0;
      double want = 0.0;
      for (size_t i = start; i < start + bucket; ++i) {
        observed += static_cast<double>(counts[order[i]]) / kDraws;
        want += expected[order[i]];
      }
      max_diff = std::max(max_diff, std::abs(observed - want));
    }
    EXPECT_LT(max_diff, 0.02) << "scale=" << scale << " seed=" << kSeed;
  }
}

TEST(SamplerTest, TopPOnLargeVocabularyKeepsTheNucleus) {
  for (float scale : {0.05f, 4.0f}) {
    const std::vector<float> logits = RandomLogits(4096, kSeed + 1, scale);
    SamplingParams params;
    params.top_p = 0.5f;
    // The nucleus, computed the slow way: tokens by descending probability until half the mass.
    const std::vector<double> p = Softmax(logits, 1.0);
    std::vector<int32_t> order(logits.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    std::set<int32_t> nucleus;
    double mass = 0.0;
    for (int32_t t : order) {
      nucleus.insert(t);
      mass += p[t];
      if (mass >= 0.5) break;
    }
    const std::vector<int> counts = Histogram(logits, params, kSeed, 3000);
    int inside = 0;
    for (size_t t = 0; t < counts.size(); ++t) {
      if (nucleus.contains(static_cast<int32_t>(t))) {
        inside += counts[t];
      } else {
        EXPECT_EQ(counts[t], 0) << "token " << t << " outside the nucleus, scale=" << scale;
      }
    }
    EXPECT_EQ(inside, 3000);
  }
}

TEST(SamplerTest, LargeVocabularyWithTopKAndTopP) {
  constexpr int kVocab = 128256;
  const std::vector<float> logits = RandomLogits(kVocab, kSeed, 2.0f);
  SamplingParams params;
  params.top_k = 50;
  params.top_p = 0.9f;
  // The 50 best tokens by logit: every draw must be among them.
  std::vector<int32_t> order(kVocab);
  for (int i = 0; i < kVocab; ++i) order[i] = i;
  std::partial_sort(order.begin(), order.begin() + 50, order.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const std::set<int32_t> top50(order.begin(), order.begin() + 50);
  std::vector<int32_t> outputs(300, 0);
  std::vector<float> scratch;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto output = std::span<const int32_t>(outputs).first(i);
    const int32_t token = Sample(logits, Context(params, {}, output, kSeed), &scratch).token;
    ASSERT_TRUE(top50.contains(token)) << "draw " << i;
  }
}

// ---------------------------------------------------------------------------------------------
// Logprobs

TEST(SamplerTest, LogprobsAreOfRawLogitsAndSumToOne) {
  const std::vector<float> logits = RandomLogits(50, kSeed);
  SamplingParams params;
  params.temperature = 0.5f;
  params.repetition_penalty = 1.3f;  // Must not change the reported logprobs.
  params.logprobs = true;
  params.top_logprobs = 50;
  const std::vector<int32_t> prompt = {1, 2, 3};
  const GeneratedToken token = SampleOnce(logits, params, prompt);

  ASSERT_EQ(token.top_logprobs.size(), 50u);
  const std::vector<double> p = Softmax(logits, 1.0);
  double sum = 0.0;
  for (const TokenLogprob& lp : token.top_logprobs) {
    EXPECT_NEAR(lp.logprob, std::log(p[lp.token]), 1e-5) << "token " << lp.token;
    sum += std::exp(static_cast<double>(lp.logprob));
  }
  EXPECT_NEAR(sum, 1.0, 1e-5);
  EXPECT_NEAR(token.logprob, std::log(p[token.token]), 1e-5);
}

TEST(SamplerTest, TopLogprobsAreSortedDescendingWithTiesById) {
  SamplingParams params = Greedy();
  params.logprobs = true;
  params.top_logprobs = 4;
  const GeneratedToken token = SampleOnce({0.5f, 2.0f, 1.0f, 2.0f, -3.0f, 1.0f}, params);
  ASSERT_EQ(token.top_logprobs.size(), 4u);
  const std::vector<int32_t> expected = {1, 3, 2, 5};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(token.top_logprobs[i].token, expected[i]) << "rank " << i;
  }
  EXPECT_EQ(token.token, 1);
  EXPECT_EQ(token.logprob, token.top_logprobs[0].logprob);
  EXPECT_EQ(token.top_logprobs[0].logprob, token.top_logprobs[1].logprob);
  EXPECT_GT(token.top_logprobs[1].logprob, token.top_logprobs[2].logprob);
}

TEST(SamplerTest, NoLogprobsUnlessAsked) {
  SamplingParams params = Greedy();
  params.top_logprobs = 3;
  const GeneratedToken token = SampleOnce({0.0f, 1.0f, 2.0f}, params);
  EXPECT_EQ(token.token, 2);
  EXPECT_EQ(token.logprob, 0.0f);
  EXPECT_TRUE(token.top_logprobs.empty());
}

TEST(SamplerTest, TopLogprobsLargerThanVocabularyReturnsEveryToken) {
  SamplingParams params = Greedy();
  params.logprobs = true;
  params.top_logprobs = 10;
  EXPECT_EQ(SampleOnce({0.0f, 1.0f, 2.0f}, params).top_logprobs.size(), 3u);
}

}  // namespace
}  // namespace tandem::engine
