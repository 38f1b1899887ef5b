#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "model/weight_source.h"
#include "test_files.h"

namespace tandem::model {
namespace {

using testing::ExpectError;

std::span<const float> Floats(const TensorView& view) {
  EXPECT_EQ(view.dtype, DType::kF32);
  return {reinterpret_cast<const float*>(view.bytes.data()), view.bytes.size() / sizeof(float)};
}

std::vector<float> Values(const WeightSource& source, const TensorSpec& spec) {
  StatusOr<TensorView> view = source.Find(spec.name, spec.shape);
  EXPECT_TRUE(view.ok()) << view.status();
  if (!view.ok()) return {};
  EXPECT_EQ(view->shape, spec.shape);
  const std::span<const float> f = Floats(*view);
  EXPECT_EQ(static_cast<int64_t>(f.size()), NumElements(spec.shape));
  return {f.begin(), f.end()};
}

ModelConfig Demo() { return *BuiltinModelConfig("demo"); }

TEST(RandomWeightsTest, ServesEveryExpectedTensor) {
  const ModelConfig c = Demo();
  const std::unique_ptr<WeightSource> source = RandomWeights(c, 7);
  for (const TensorSpec& spec : ExpectedTensors(c)) {
    EXPECT_TRUE(source->Contains(spec.name)) << spec.name;
    EXPECT_FALSE(Values(*source, spec).empty()) << spec.name;
  }
  EXPECT_FALSE(source->Contains("model.layers.4.input_layernorm.weight"));
}

TEST(RandomWeightsTest, DeterministicPerSeedAndName) {
  const ModelConfig c = Demo();
  const std::unique_ptr<WeightSource> a = RandomWeights(c, 1234);
  const std::unique_ptr<WeightSource> b = RandomWeights(c, 1234);
  const std::unique_ptr<WeightSource> other = RandomWeights(c, 1235);
  const std::vector<TensorSpec> specs = ExpectedTensors(c);
  // Ask in opposite orders: values must not depend on the order.
  std::vector<std::vector<float>> from_a;
  for (const TensorSpec& spec : specs) from_a.push_back(Values(*a, spec));
  for (size_t i = specs.size(); i-- > 0;) {
    const std::vector<float> from_b = Values(*b, specs[i]);
    ASSERT_EQ(std::memcmp(from_a[i].data(), from_b.data(), from_b.size() * 4), 0) << specs[i].name;
    EXPECT_NE(Values(*other, specs[i]), from_a[i]) << specs[i].name;
  }
  // Same-shaped tensors of different names differ.
  EXPECT_NE(Values(*a, {"model.layers.0.mlp.up_proj.weight", {352, 128}}),
            Values(*a, {"model.layers.0.mlp.gate_proj.weight", {352, 128}}));
}

TEST(RandomWeightsTest, SameTensorAcrossConfigsWithSameShape) {
  // A name's values depend on (seed, name, index) only, not on the rest of the config.
  ModelConfig c = Demo();
  ModelConfig deeper = c;
  deeper.num_hidden_layers = 6;
  const TensorSpec spec{"model.layers.1.self_attn.q_proj.weight", {128, 128}};
  EXPECT_EQ(Values(*RandomWeights(c, 3), spec), Values(*RandomWeights(deeper, 3), spec));
}

// The generator the header documents, written out independently.
float DocumentedValue(uint64_t seed, const std::string& name, uint64_t i, double scale,
                      double offset) {
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  uint64_t fnv = 0xcbf29ce484222325ull;
  for (const unsigned char ch : name) fnv = (fnv ^ ch) * 0x100000001b3ull;
  const uint64_t key = mix(seed ^ fnv);
  const uint64_t k = mix(key + (i + 1) * 0x9e3779b97f4a7c15ull) >> 40;
  const double u = (2.0 * static_cast<double>(k) + 1.0 - 16777216.0) / 16777216.0;
  return static_cast<float>(offset + scale * u);
}

TEST(RandomWeightsTest, MatchesTheDocumentedGenerator) {
  const ModelConfig c = Demo();
  const std::unique_ptr<WeightSource> source = RandomWeights(c, 99);
  struct Case {
    TensorSpec spec;
    double scale;
    double offset;
  };
  const Case cases[] = {
      {{"model.embed_tokens.weight", {512, 128}}, 0.02 * std::sqrt(3.0), 0},
      {{"model.layers.2.input_layernorm.weight", {128}}, 0.1, 1},
      {{"model.norm.weight", {128}}, 0.1, 1},
  };
  for (const Case& tc : cases) {
    const std::vector<float> values = Values(*source, tc.spec);
    for (const uint64_t i : {uint64_t{0}, uint64_t{1}, uint64_t{77}, values.size() - 1}) {
      EXPECT_NEAR(values[i], DocumentedValue(99, tc.spec.name, i, tc.scale, tc.offset), 2e-7)
          << tc.spec.name << "[" << i << "]";
    }
  }
}

struct Stats {
  double mean = 0;
  double std = 0;
  double min = 1e30;
  double max = -1e30;
  int64_t zeros = 0;
};

Stats StatsOf(const std::vector<float>& values) {
  Stats s;
  double sum = 0;
  double sum_sq = 0;
  for (const float v : values) {
    sum += v;
    sum_sq += static_cast<double>(v) * v;
    s.min = std::min<double>(s.min, v);
    s.max = std::max<double>(s.max, v);
    if (v == 0.0f) ++s.zeros;
  }
  const double n = static_cast<double>(values.size());
  s.mean = sum / n;
  s.std = std::sqrt(std::max(0.0, sum_sq / n - s.mean * s.mean));
  return s;
}

TEST(RandomWeightsTest, DistributionsAndNoZeros) {
  ModelConfig c = Demo();
  c.attention_bias = true;
  c.o_proj_bias = true;
  c.mlp_bias = true;
  const std::unique_ptr<WeightSource> source = RandomWeights(c, 42);
  const double a = 0.02 * std::sqrt(3.0);
  for (const TensorSpec& spec : ExpectedTensors(c)) {
    const Stats s = StatsOf(Values(*source, spec));
    EXPECT_EQ(s.zeros, 0) << spec.name;
    const bool norm = spec.name.ends_with("norm.weight");
    const bool bias = spec.name.ends_with(".bias");
    if (norm) {
      EXPECT_GT(s.min, 0.9) << spec.name;
      EXPECT_LT(s.max, 1.1) << spec.name;
      EXPECT_NEAR(s.mean, 1.0, 0.02) << spec.name;
    } else if (bias) {
      EXPECT_GE(s.min, -0.02) << spec.name;
      EXPECT_LE(s.max, 0.02) << spec.name;
      EXPECT_NEAR(s.mean, 0.0, 0.008) << spec.name;
    } else {
      EXPECT_GE(s.min, -a) << spec.name;
      EXPECT_LE(s.max, a) << spec.name;
      EXPECT_NEAR(s.mean, 0.0, 0.001) << spec.name;
      EXPECT_NEAR(s.std, 0.02, 0.0005) << spec.name;  // Matrices have >= 8192 elements.
    }
  }
}

TEST(RandomWeightsTest, ErrorsNameTheTensor) {
  const std::unique_ptr<WeightSource> source = RandomWeights(Demo(), 5);
  const std::vector<int64_t> wrong = {128, 64};
  const Status status = source->Find("model.layers.0.self_attn.q_proj.weight", wrong).status();
  ExpectError(
      status, StatusCode::kInvalidArgument,
      {"'model.layers.0.self_attn.q_proj.weight' has shape [128, 128], expected [128, 64]"});
  ExpectError(source->Find("model.layers.0.self_attn.q_proj.bias", wrong).status(),
              StatusCode::kNotFound, {"'model.layers.0.self_attn.q_proj.bias'"});
}

TEST(RandomWeightsTest, TiedEmbeddingsHaveNoLmHead) {
  ModelConfig c = Demo();
  c.tie_word_embeddings = true;
  const std::unique_ptr<WeightSource> source = RandomWeights(c, 5);
  EXPECT_FALSE(source->Contains("lm_head.weight"));
  const std::vector<int64_t> shape = {512, 128};
  EXPECT_EQ(source->Find("lm_head.weight", shape).status().code(), StatusCode::kNotFound);
}

TEST(RandomWeightsTest, ConcurrentFindsGenerateOnce) {
  const ModelConfig c = Demo();
  const std::unique_ptr<WeightSource> source = RandomWeights(c, 11);
  const std::vector<TensorSpec> specs = ExpectedTensors(c);
  constexpr int kThreads = 8;
  std::vector<std::vector<const std::byte*>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (const TensorSpec& spec : specs) {
        StatusOr<TensorView> view = source->Find(spec.name, spec.shape);
        seen[static_cast<size_t>(t)].push_back(view.ok() ? view->bytes.data() : nullptr);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 1; t < kThreads; ++t) EXPECT_EQ(seen[static_cast<size_t>(t)], seen[0]);
  for (const std::byte* p : seen[0]) EXPECT_NE(p, nullptr);
}

TEST(RandomWeightsTest, Llama100mEmbeddingIsFast) {
  const ModelConfig c = *BuiltinModelConfig("llama-100m");
  const std::unique_ptr<WeightSource> source = RandomWeights(c, 0);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int64_t> shape = {32000, 768};
  StatusOr<TensorView> view = source->Find("model.embed_tokens.weight", shape);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->bytes.size(), 32000u * 768u * 4u);
  // A quarter of the model's parameters; generous bound for a loaded, unoptimized build.
  EXPECT_LT(seconds, 5.0);
  std::printf("llama-100m embed_tokens (24.6M floats) generated in %.3f s\n", seconds);
}

}  // namespace
}  // namespace tandem::model
