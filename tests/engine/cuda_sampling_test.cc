// The device sampler (engine/cuda/sampling.cu through GpuSampler) against the CPU sampler, its
// oracle, on fresh random logits (vocabularies of 128256 and 1000; normal, peaked, NaN/-inf,
// tied, and flat rows whose candidates overflow shared memory): greedy tokens always equal,
// sampled tokens equal on >= 99.5% of the draws (they may differ only by rounding, see
// sampling.h), logprobs within 1e-4 with the same top ids; results bit-identical when repeated
// and independent of the batch; the empirical distribution of a small vocabulary matches the
// expected one. Prints the agreement counts (grep "cuda-sampling") and a timing of 64 rows of
// 128256. Skips without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/cuda/cuda_util.h"
#include "engine/cuda/gpu_sampler.h"
#include "engine/cuda/sampling.h"
#include "engine/sampler.h"
#include "engine_test_util.h"

namespace tandem::engine::testing {
namespace {

using cuda::CudaEvent;
using cuda::CudaStream;
using cuda::DeviceBuffer;
using cuda::GpuSampler;
using GpuSampleRequest = cuda::GpuSampler::Row;

constexpr uint64_t kSeed = 20250301;
constexpr int kBigVocab = 128256;
constexpr int kSmallVocab = 1000;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

enum class Shape { kNormal, kPeaked, kDirty, kTies, kFlat };
constexpr Shape kShapes[] = {Shape::kNormal, Shape::kPeaked, Shape::kDirty, Shape::kTies,
                             Shape::kFlat};

const char* ShapeName(Shape shape) {
  switch (shape) {
    case Shape::kNormal:
      return "normal";
    case Shape::kPeaked:
      return "peaked";
    case Shape::kDirty:
      return "nan-inf";
    case Shape::kTies:
      return "ties";
    case Shape::kFlat:
      return "flat";
  }
  return "?";
}

// A logits row: N(0, 3) with a twist per shape. kFlat puts every token in a band of width 0.05
// (one radix bin: the overflow list); kTies rounds to multiples of 0.25 (long runs of exact ties,
// also at the top).
std::vector<float> MakeRow(int vocab, Shape shape, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int> token(0, vocab - 1);
  std::vector<float> row(static_cast<size_t>(vocab));
  for (float& x : row) x = normal(rng);
  switch (shape) {
    case Shape::kNormal:
      break;
    case Shape::kPeaked:  // a confident model: one token far ahead, a few runners-up
      row[static_cast<size_t>(token(rng))] += 14.0f;
      for (int i = 0; i < 5; ++i) row[static_cast<size_t>(token(rng))] += 9.0f;
      break;
    case Shape::kDirty:
      for (int i = 0; i < vocab / 50 + 1; ++i) row[static_cast<size_t>(token(rng))] = kNaN;
      for (int i = 0; i < vocab / 20 + 1; ++i) row[static_cast<size_t>(token(rng))] = -kInf;
      break;
    case Shape::kTies:
      for (float& x : row) x = std::round(x * 4.0f) / 4.0f;
      break;
    case Shape::kFlat: {
      std::uniform_real_distribution<float> band(1.0f, 1.05f);
      for (float& x : row) x = band(rng);
      break;
    }
  }
  return row;
}

std::vector<int32_t> RandomTokens(int n, int vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int32_t> token(0, vocab - 1);
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int32_t& t : tokens) t = token(rng);
  return tokens;
}

struct Config {
  std::string name;
  SamplingParams params;
  bool history = false;  // prompt and output tokens that matter (penalties)
};

SamplingParams Params(float temperature, float top_p = 1.0f, int top_k = 0, float min_p = 0.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_p = top_p;
  p.top_k = top_k;
  p.min_p = min_p;
  return p;
}

std::vector<Config> Configs() {
  std::vector<Config> configs = {
      {"greedy", Params(0.0f)},
      {"t0.7", Params(0.7f)},
      {"t1.0", Params(1.0f)},
      {"t1.5", Params(1.5f)},
      {"k1", Params(1.0f, 1.0f, 1)},
      {"k5", Params(1.0f, 1.0f, 5)},
      {"k50", Params(1.0f, 1.0f, 50)},
      {"k2000", Params(1.0f, 1.0f, 2000)},
      {"p0.1", Params(1.0f, 0.1f)},
      {"p0.9", Params(1.0f, 0.9f)},
      {"p0.99", Params(1.0f, 0.99f)},
      {"minp0.05", Params(1.0f, 1.0f, 0, 0.05f)},
      {"t0.8-k50-p0.9-minp0.05", Params(0.8f, 0.9f, 50, 0.05f)},
      {"t1.2-k2000-p0.95", Params(1.2f, 0.95f, 2000)},
  };
  SamplingParams penalties = Params(0.9f, 0.95f);
  penalties.repetition_penalty = 1.3f;
  penalties.presence_penalty = 0.5f;
  penalties.frequency_penalty = 0.3f;
  configs.push_back({"penalties", penalties, true});
  SamplingParams greedy_penalties = Params(0.0f);
  greedy_penalties.repetition_penalty = 1.8f;
  greedy_penalties.frequency_penalty = -0.7f;
  configs.push_back({"greedy-penalties", greedy_penalties, true});
  SamplingParams logprobs5 = Params(1.0f);
  logprobs5.logprobs = true;
  logprobs5.top_logprobs = 5;
  configs.push_back({"logprobs5", logprobs5});
  SamplingParams logprobs20 = Params(0.7f, 0.9f);
  logprobs20.logprobs = true;
  logprobs20.top_logprobs = 20;
  logprobs20.repetition_penalty = 1.2f;
  configs.push_back({"logprobs20-penalties", logprobs20, true});
  SamplingParams greedy_logprobs = Params(0.0f);
  greedy_logprobs.logprobs = true;
  configs.push_back({"greedy-logprobs0", greedy_logprobs});
  return configs;
}

// One row to sample, owning what its SamplingContext points to.
struct Case {
  std::string label;
  SamplingParams params;
  std::vector<float> logits;
  std::vector<int32_t> prompt;
  std::vector<int32_t> output;
  uint64_t seed = 0;

  SamplingContext Context() const {
    return SamplingContext{
        .params = &params, .prompt_tokens = prompt, .output_tokens = output, .seed = seed};
  }
};

Case MakeCase(const Config& config, int vocab, Shape shape, std::mt19937_64& rng) {
  Case c;
  c.label = config.name + "/" + std::to_string(vocab) + "/" + ShapeName(shape);
  c.params = config.params;
  c.logits = MakeRow(vocab, shape, rng);
  c.seed = rng();
  std::uniform_int_distribution<int> length(0, 40);
  if (config.history) {
    c.prompt = RandomTokens(length(rng) * 10, vocab, rng);
    c.output = RandomTokens(length(rng), vocab, rng);
    // Repeats, so that frequency counts exceed one.
    for (int i = 0; i < 5 && !c.output.empty(); ++i) c.output.push_back(c.output[0]);
  } else {
    c.output = RandomTokens(length(rng), vocab, rng);  // only its length matters: the draw index
  }
  return c;
}

std::string Describe(const GeneratedToken& t) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "token %d logprob %.6f", t.token, t.logprob);
  std::string s = buffer;
  for (const TokenLogprob& top : t.top_logprobs) {
    std::snprintf(buffer, sizeof(buffer), " %d:%.6f", top.token, top.logprob);
    s += buffer;
  }
  return s;
}

bool BitEqual(const GeneratedToken& a, const GeneratedToken& b) {
  if (a.token != b.token || std::memcmp(&a.logprob, &b.logprob, sizeof(float)) != 0 ||
      a.top_logprobs.size() != b.top_logprobs.size()) {
    return false;
  }
  for (size_t i = 0; i < a.top_logprobs.size(); ++i) {
    if (a.top_logprobs[i].token != b.top_logprobs[i].token ||
        std::memcmp(&a.top_logprobs[i].logprob, &b.top_logprobs[i].logprob, sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

class CudaSamplingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
    auto stream = CudaStream::Create();
    ASSERT_TRUE(stream.ok()) << stream.status();
    stream_ = std::move(stream).value();
  }

  // Uploads the cases' logits as one matrix [cases, vocab] (all cases share the vocabulary).
  DeviceBuffer Upload(std::span<const Case> cases) {
    const size_t vocab = cases.front().logits.size();
    std::vector<float> matrix;
    matrix.reserve(cases.size() * vocab);
    for (const Case& c : cases) {
      EXPECT_EQ(c.logits.size(), vocab);
      matrix.insert(matrix.end(), c.logits.begin(), c.logits.end());
    }
    auto buffer = DeviceBuffer::Create(matrix.size() * sizeof(float));
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    if (!buffer.ok()) return DeviceBuffer();
    EXPECT_EQ(cudaMemcpy(buffer->data(), matrix.data(), matrix.size() * sizeof(float),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
    return std::move(buffer).value();
  }

  // Samples every case on the device, in one batch; rows[i] picks the matrix row of request i.
  // Request i samples logits row rows[i] with the parameters and seed of cases[rows[i]].
  std::vector<GeneratedToken> SampleOnDevice(const DeviceBuffer& logits, int vocab,
                                             std::span<const Case> cases,
                                             std::span<const int> rows) {
    return SampleOnDevice(logits, vocab, cases, rows, rows);
  }

  // Request i samples logits row rows[i] with the parameters and seed of cases[case_of[i]].
  std::vector<GeneratedToken> SampleOnDevice(const DeviceBuffer& logits, int vocab,
                                             std::span<const Case> cases,
                                             std::span<const int> rows,
                                             std::span<const int> case_of) {
    auto sampler = GpuSampler::Create();
    EXPECT_TRUE(sampler.ok()) << sampler.status();
    if (!sampler.ok()) return {};
    std::vector<SamplingContext> contexts;
    std::vector<GpuSampleRequest> requests;
    contexts.reserve(rows.size());
    for (int c : case_of) contexts.push_back(cases[static_cast<size_t>(c)].Context());
    for (size_t i = 0; i < rows.size(); ++i) requests.push_back({rows[i], &contexts[i]});
    std::vector<GeneratedToken> tokens;
    const Status status =
        (*sampler)->Sample(logits.as<float>(), vocab, requests, stream_.get(), &tokens);
    EXPECT_TRUE(status.ok()) << status;
    return tokens;
  }

  std::vector<GeneratedToken> SampleAll(const DeviceBuffer& logits, std::span<const Case> cases) {
    std::vector<int> rows(cases.size());
    std::iota(rows.begin(), rows.end(), 0);
    return SampleOnDevice(logits, static_cast<int>(cases.front().logits.size()), cases, rows);
  }

  CudaStream stream_;
};

// UniformDrawBits (host and device) is the CPU's UniformDraw, bit for bit. Needs no device.
TEST(CudaSamplingDrawTest, UniformDrawBitsMatchCpu) {
  std::mt19937_64 rng(kSeed);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t seed = i < 100 ? static_cast<uint64_t>(i) : rng();
    const uint64_t index = static_cast<uint64_t>(i % 1000);
    ASSERT_EQ(UniformDraw(seed, index),
              static_cast<double>(cuda::UniformDrawBits(seed, index)) * 0x1.0p-53)
        << "seed " << seed << " index " << index;
  }
}

TEST_F(CudaSamplingTest, MatchesCpuSampler) {
  std::mt19937_64 rng(kSeed);
  int draws = 0;
  int equal = 0;
  int greedy = 0;
  int logprob_rows = 0;
  std::vector<float> scratch;
  for (int vocab : {kBigVocab, kSmallVocab}) {
    for (const Config& config : Configs()) {
      // Fresh rows per case; 10 rows of the big vocabulary and 40 of the small one per config.
      const int rows = vocab == kBigVocab ? 10 : 40;
      std::vector<Case> cases;
      for (int i = 0; i < rows; ++i) {
        cases.push_back(MakeCase(config, vocab, kShapes[i % 5], rng));
      }
      const DeviceBuffer logits = Upload(cases);
      const std::vector<GeneratedToken> gpu = SampleAll(logits, cases);
      ASSERT_EQ(gpu.size(), cases.size());
      int config_equal = 0;
      for (size_t i = 0; i < cases.size(); ++i) {
        const Case& c = cases[i];
        const SamplingContext ctx = c.Context();
        const GeneratedToken cpu = Sample(c.logits, ctx, &scratch);
        const bool same = gpu[i].token == cpu.token;
        config_equal += same ? 1 : 0;
        if (c.params.greedy()) {
          ++greedy;
          EXPECT_TRUE(same) << c.label << " seed " << c.seed << ": gpu " << Describe(gpu[i])
                            << ", cpu " << Describe(cpu);
        } else if (!same) {
          std::printf("cuda-sampling: differs %s seed %llu draw %zu: gpu %d cpu %d\n",
                      c.label.c_str(), static_cast<unsigned long long>(c.seed), c.output.size(),
                      gpu[i].token, cpu.token);
        }
        if (c.params.logprobs) {
          ++logprob_rows;
          // The chosen token's logprob is compared where the tokens agree.
          if (same) {
            EXPECT_NEAR(gpu[i].logprob, cpu.logprob, 1e-4) << c.label;
          }
          ASSERT_EQ(gpu[i].top_logprobs.size(), cpu.top_logprobs.size()) << c.label;
          for (size_t j = 0; j < cpu.top_logprobs.size(); ++j) {
            EXPECT_EQ(gpu[i].top_logprobs[j].token, cpu.top_logprobs[j].token)
                << c.label << " rank " << j;
            const float g = gpu[i].top_logprobs[j].logprob;
            const float h = cpu.top_logprobs[j].logprob;
            if (std::isinf(h)) {
              EXPECT_EQ(g, h) << c.label << " rank " << j;
            } else {
              EXPECT_NEAR(g, h, 1e-4) << c.label << " rank " << j;
            }
          }
        } else {
          EXPECT_TRUE(gpu[i].top_logprobs.empty());
        }
      }
      draws += static_cast<int>(cases.size());
      equal += config_equal;
      std::printf("cuda-sampling: %-24s vocab %6d: %d/%zu tokens equal\n", config.name.c_str(),
                  vocab, config_equal, cases.size());
    }
  }
  std::printf(
      "cuda-sampling: %d/%d tokens equal to the CPU sampler (%d greedy rows, %d with "
      "logprobs)\n",
      equal, draws, greedy, logprob_rows);
  EXPECT_GE(equal, static_cast<int>(std::ceil(0.995 * draws)));
}

// Edge rows: all -inf, an infinite logit, min_p > 1, a one-token vocabulary.
TEST_F(CudaSamplingTest, EdgeRowsMatchCpuSampler) {
  std::vector<float> scratch;
  std::vector<Case> cases;
  auto add = [&](std::string label, std::vector<float> logits, SamplingParams params) {
    Case c;
    c.label = std::move(label);
    c.logits = std::move(logits);
    c.params = params;
    c.seed = cases.size() * 7919 + 1;
    cases.push_back(std::move(c));
  };
  std::vector<float> all_ninf(64, -kInf);
  std::vector<float> with_inf(64, 0.5f);
  with_inf[17] = kInf;
  with_inf[40] = kInf;
  std::vector<float> all_nan(64, kNaN);
  std::vector<float> zeros(64, 0.0f);
  zeros[3] = -0.0f;  // -0 and +0 tie: the lower id wins
  std::mt19937_64 rng(kSeed + 1);
  std::vector<float> normal = MakeRow(64, Shape::kNormal, rng);
  SamplingParams logprobs = Params(1.0f);
  logprobs.logprobs = true;
  logprobs.top_logprobs = 20;
  for (const SamplingParams& params :
       {Params(0.0f), Params(1.0f), Params(1.0f, 0.5f, 3), logprobs}) {
    add("all -inf", all_ninf, params);
    add("+inf", with_inf, params);
    add("all nan", all_nan, params);
    add("zeros", zeros, params);
  }
  add("min_p > 1", normal, Params(1.0f, 1.0f, 0, 1.5f));
  add("min_p 1", normal, Params(1.0f, 1.0f, 0, 1.0f));
  add("top_p 0", normal, Params(1.0f, 0.0f));
  add("tiny temperature", normal, Params(1e-6f));
  const DeviceBuffer logits = Upload(cases);
  const std::vector<GeneratedToken> gpu = SampleAll(logits, cases);
  ASSERT_EQ(gpu.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const SamplingContext ctx = cases[i].Context();
    const GeneratedToken cpu = Sample(cases[i].logits, ctx, &scratch);
    EXPECT_EQ(gpu[i].token, cpu.token) << cases[i].label;
    if (cases[i].params.logprobs) {
      ASSERT_EQ(gpu[i].top_logprobs.size(), cpu.top_logprobs.size()) << cases[i].label;
      for (size_t j = 0; j < cpu.top_logprobs.size(); ++j) {
        EXPECT_EQ(gpu[i].top_logprobs[j].token, cpu.top_logprobs[j].token) << cases[i].label;
      }
    }
  }
  // A one-token vocabulary.
  Case one;
  one.logits = {0.25f};
  one.params = logprobs;
  const std::vector<Case> single = {one};
  const DeviceBuffer one_logits = Upload(single);
  const std::vector<GeneratedToken> t = SampleAll(one_logits, single);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].token, 0);
  EXPECT_NEAR(t[0].logprob, 0.0f, 1e-6);
}

// The same inputs give the same bits; a row's result does not depend on the rest of the batch.
TEST_F(CudaSamplingTest, DeterministicAndBatchIndependent) {
  std::mt19937_64 rng(kSeed + 2);
  const std::vector<Config> configs = Configs();
  std::vector<Case> cases;
  for (int i = 0; i < 64; ++i) {
    cases.push_back(
        MakeCase(configs[static_cast<size_t>(i) % configs.size()], kBigVocab, kShapes[i % 5], rng));
  }
  const DeviceBuffer logits = Upload(cases);
  const std::vector<GeneratedToken> first = SampleAll(logits, cases);
  const std::vector<GeneratedToken> second = SampleAll(logits, cases);
  ASSERT_EQ(first.size(), cases.size());
  ASSERT_EQ(second.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_TRUE(BitEqual(first[i], second[i]))
        << cases[i].label << ": " << Describe(first[i]) << " vs " << Describe(second[i]);
  }
  // Alone, and in a batch in reverse order with duplicates.
  std::vector<int> reversed(cases.size());
  std::iota(reversed.rbegin(), reversed.rend(), 0);
  const std::vector<GeneratedToken> backwards = SampleOnDevice(logits, kBigVocab, cases, reversed);
  ASSERT_EQ(backwards.size(), cases.size());
  for (size_t i = 0; i < cases.size(); i += 7) {
    const int row = static_cast<int>(i);
    const std::vector<GeneratedToken> alone =
        SampleOnDevice(logits, kBigVocab, cases, std::span<const int>(&row, 1));
    ASSERT_EQ(alone.size(), 1u);
    EXPECT_TRUE(BitEqual(alone[0], first[i]))
        << cases[i].label << ": alone " << Describe(alone[0]) << ", batched " << Describe(first[i]);
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_TRUE(BitEqual(backwards[cases.size() - 1 - i], first[i])) << cases[i].label;
  }
}

// 20000 draws (one per seed) from 8 tokens with top-p 0.9: the empirical frequencies match the
// renormalized top-p distribution.
TEST_F(CudaSamplingTest, DistributionMatchesTopPProbabilities) {
  constexpr int kDraws = 20000;
  Case base;
  base.logits = {1.2f, 2.0f, -0.5f, 1.5f, 0.3f, -2.0f, 0.9f, 1.5f};
  base.params = Params(1.0f, 0.9f);
  // Expected: softmax, the smallest Before-order prefix with mass >= 0.9, renormalized.
  const size_t vocab = base.logits.size();
  std::vector<int> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return base.logits[a] > base.logits[b]; });
  std::vector<double> p(vocab);
  double z = 0.0;
  for (size_t i = 0; i < vocab; ++i)
    z += p[i] = std::exp(static_cast<double>(base.logits[i]) - 2.0);
  std::vector<double> expected(vocab, 0.0);
  double kept = 0.0;
  for (int t : order) {
    expected[static_cast<size_t>(t)] = p[static_cast<size_t>(t)];
    kept += p[static_cast<size_t>(t)];
    if (kept >= 0.9 * z) break;
  }
  for (double& e : expected) e /= kept;

  std::vector<Case> cases(kDraws, base);
  for (int i = 0; i < kDraws; ++i) cases[static_cast<size_t>(i)].seed = static_cast<uint64_t>(i);
  const std::vector<Case> one = {base};
  const DeviceBuffer logits = Upload(one);
  // Every draw reads the one logits row, each with its own case's seed.
  const std::vector<int> rows(kDraws, 0);
  std::vector<int> case_of(kDraws);
  std::iota(case_of.begin(), case_of.end(), 0);
  const std::vector<GeneratedToken> gpu =
      SampleOnDevice(logits, static_cast<int>(vocab), cases, rows, case_of);
  ASSERT_EQ(gpu.size(), cases.size());
  std::vector<int> counts(vocab, 0);
  int equal = 0;
  std::vector<float> scratch;
  for (int i = 0; i < kDraws; ++i) {
    const Case& c = cases[static_cast<size_t>(i)];
    ASSERT_GE(gpu[static_cast<size_t>(i)].token, 0);
    ASSERT_LT(gpu[static_cast<size_t>(i)].token, static_cast<int>(vocab));
    ++counts[static_cast<size_t>(gpu[static_cast<size_t>(i)].token)];
    const SamplingContext ctx = c.Context();
    equal += Sample(c.logits, ctx, &scratch).token == gpu[static_cast<size_t>(i)].token ? 1 : 0;
  }
  double max_deviation = 0.0;
  for (size_t t = 0; t < vocab; ++t) {
    const double freq = static_cast<double>(counts[t]) / kDraws;
    max_deviation = std::max(max_deviation, std::abs(freq - expected[t]));
    if (expected[t] == 0.0) {
      EXPECT_EQ(counts[t], 0) << "token " << t << " is outside the top-p set";
    }
  }
  std::printf(
      "cuda-sampling: 8-token top-p 0.9 over %d seeds: max |freq - p| = %.4f, %d/%d "
      "equal to the CPU sampler\n",
      kDraws, max_deviation, equal, kDraws);
  EXPECT_LT(max_deviation, 0.01);
  EXPECT_GE(equal, static_cast<int>(0.995 * kDraws));
}

// Time (cudaEvent, median of 30) for 64 rows of 128256 logits: the kernel alone, the device work
// of GpuSampler::Enqueue (upload, kernel, download) and Enqueue + Finish on the host. Informational
// (0 = not measured).
TEST_F(CudaSamplingTest, Timing) {
  constexpr int kRows = 64;
  constexpr int kRuns = 30;
  std::mt19937_64 rng(kSeed + 3);
  struct Setting {
    const char* name;
    SamplingParams params;
  };
  SamplingParams logprobs = Params(0.8f, 0.9f, 50);
  logprobs.logprobs = true;
  logprobs.top_logprobs = 5;
  SamplingParams penalties = Params(0.8f, 0.9f, 50);
  penalties.repetition_penalty = 1.1f;
  penalties.frequency_penalty = 0.2f;
  const Setting settings[] = {
      {"greedy", Params(0.0f)},
      {"t0.8 top-k 50 top-p 0.9", Params(0.8f, 0.9f, 50)},
      {"t1.0 top-p 0.9", Params(1.0f, 0.9f)},
      {"t1.0", Params(1.0f)},
      {"t0.8 k50 p0.9 + penalties", penalties},
      {"t0.8 k50 p0.9 + logprobs 5", logprobs},
  };
  std::vector<Case> cases;
  for (int i = 0; i < kRows; ++i) {
    Case c;
    c.logits = MakeRow(kBigVocab, i % 4 == 0 ? Shape::kPeaked : Shape::kNormal, rng);
    c.seed = rng();
    c.prompt = RandomTokens(500, kBigVocab, rng);
    c.output = RandomTokens(100, kBigVocab, rng);
    cases.push_back(std::move(c));
  }
  const DeviceBuffer logits = Upload(cases);
  auto start = CudaEvent::Create(/*timing=*/true);
  auto stop = CudaEvent::Create(/*timing=*/true);
  ASSERT_TRUE(start.ok() && stop.ok());
  for (const Setting& setting : settings) {
    for (Case& c : cases) c.params = setting.params;
    std::vector<SamplingContext> contexts;
    std::vector<GpuSampleRequest> requests;
    for (const Case& c : cases) contexts.push_back(c.Context());
    for (int i = 0; i < kRows; ++i) requests.push_back({i, &contexts[static_cast<size_t>(i)]});
    auto sampler = GpuSampler::Create(kRows, kBigVocab);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    std::vector<GeneratedToken> tokens;
    std::vector<float> kernel_us;
    std::vector<float> total_us;
    for (int run = 0; run < kRuns; ++run) {
      const auto t0 = std::chrono::steady_clock::now();
      ASSERT_TRUE(start->Record(stream_.get()).ok());
      ASSERT_TRUE((*sampler)->Enqueue(logits.as<float>(), kBigVocab, requests, stream_.get()).ok());
      ASSERT_TRUE(stop->Record(stream_.get()).ok());
      ASSERT_TRUE((*sampler)->Finish(&tokens).ok());
      const auto t1 = std::chrono::steady_clock::now();
      ASSERT_TRUE(stop->Synchronize().ok());
      float ms = 0.0f;
      ASSERT_EQ(cudaEventElapsedTime(&ms, start->get(), stop->get()), cudaSuccess);
      kernel_us.push_back(ms * 1000.0f);
      total_us.push_back(std::chrono::duration<float, std::micro>(t1 - t0).count());
    }
    std::sort(kernel_us.begin(), kernel_us.end());
    std::sort(total_us.begin(), total_us.end());
    // The kernel alone (rows without penalty entries: the penalties setting is left out).
    float launch_us = 0.0f;
    if (setting.params.repetition_penalty == 1.0f && setting.params.frequency_penalty == 0.0f) {
      std::vector<cuda::SampleRow> rows(kRows);
      for (int i = 0; i < kRows; ++i) {
        cuda::SampleRow& r = rows[static_cast<size_t>(i)];
        r.logits_row = i;
        r.temperature = setting.params.temperature;
        r.top_p = setting.params.top_p;
        r.top_k = setting.params.top_k;
        r.min_p_offset = -std::numeric_limits<double>::infinity();
        r.seed = cases[static_cast<size_t>(i)].seed;
        r.draw_index = cases[static_cast<size_t>(i)].output.size();
        r.num_top_logprobs = setting.params.logprobs ? setting.params.top_logprobs : -1;
      }
      auto device_rows = DeviceBuffer::Create(rows.size() * sizeof(cuda::SampleRow));
      auto results = DeviceBuffer::Create(rows.size() * sizeof(cuda::SampleResult));
      auto scratch = DeviceBuffer::Create(cuda::SampleScratchBytes(kBigVocab, kRows));
      ASSERT_TRUE(device_rows.ok() && results.ok() && scratch.ok());
      ASSERT_EQ(cudaMemcpy(device_rows->data(), rows.data(), rows.size() * sizeof(cuda::SampleRow),
                           cudaMemcpyHostToDevice),
                cudaSuccess);
      cuda::SampleBatchParams p;
      p.logits = logits.as<float>();
      p.logits_stride = kBigVocab;
      p.vocab = kBigVocab;
      p.rows = device_rows->as<cuda::SampleRow>();
      p.num_rows = kRows;
      p.results = results->as<cuda::SampleResult>();
      p.scratch = scratch->data();
      std::vector<float> launch;
      for (int run = 0; run < kRuns; ++run) {
        ASSERT_TRUE(start->Record(stream_.get()).ok());
        ASSERT_EQ(cuda::LaunchSample(p, stream_.get()), cudaSuccess);
        ASSERT_TRUE(stop->Record(stream_.get()).ok());
        ASSERT_TRUE(stop->Synchronize().ok());
        float ms = 0.0f;
        ASSERT_EQ(cudaEventElapsedTime(&ms, start->get(), stop->get()), cudaSuccess);
        launch.push_back(ms * 1000.0f);
      }
      std::sort(launch.begin(), launch.end());
      launch_us = launch[kRuns / 2];
    }
    std::printf(
        "cuda-sampling: timing %-28s %d rows x %d: kernel %.1f us, device work of "
        "Enqueue %.1f us, host Enqueue+Finish %.1f us (medians of %d)\n",
        setting.name, kRows, kBigVocab, launch_us, kernel_us[kRuns / 2], total_us[kRuns / 2],
        kRuns);
  }
}

}  // namespace
}  // namespace tandem::engine::testing
