#include "model/weight_source.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_files.h"

namespace tandem::model {
namespace {

using testing::Bf16Bytes;
using testing::ExpectError;
using testing::F32Bytes;
using testing::ReadFile;
using testing::SafetensorsBytes;
using testing::TempDir;
using testing::TestTensor;
using testing::WriteFile;

ModelConfig TinyConfig() {
  ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 16;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 4;
  c.max_position_embeddings = 64;
  c.rope.original_max_position_embeddings = 64;
  return c;
}

std::map<std::string, std::vector<int64_t>> SpecMap(const ModelConfig& config) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    EXPECT_TRUE(out.emplace(spec.name, spec.shape).second) << "duplicate " << spec.name;
  }
  return out;
}

// Element i of a tensor holds a small value distinct per tensor, exact in bf16.
std::vector<float> FixtureValues(size_t tensor_index, int64_t n) {
  std::vector<float> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    values[static_cast<size_t>(i)] = static_cast<float>(tensor_index) + 0.25f * (i % 4);
  }
  return values;
}

std::vector<TestTensor> CheckpointTensors(const ModelConfig& config) {
  std::vector<TestTensor> tensors;
  const std::vector<TensorSpec> specs = ExpectedTensors(config);
  for (size_t i = 0; i < specs.size(); ++i) {
    tensors.push_back({specs[i].name, "BF16", specs[i].shape,
                       Bf16Bytes(FixtureValues(i, NumElements(specs[i].shape)))});
  }
  return tensors;
}

void ExpectServesCheckpoint(const WeightSource& source, const ModelConfig& config) {
  const std::vector<TensorSpec> specs = ExpectedTensors(config);
  for (size_t i = 0; i < specs.size(); ++i) {
    ASSERT_TRUE(source.Contains(specs[i].name)) << specs[i].name;
    StatusOr<TensorView> view = source.Find(specs[i].name, specs[i].shape);
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->dtype, DType::kBF16);
    EXPECT_EQ(view->shape, specs[i].shape);
    std::vector<float> values(static_cast<size_t>(view->NumElements()));
    ConvertToF32(*view, values);
    EXPECT_EQ(values, FixtureValues(i, view->NumElements())) << specs[i].name;
  }
}

// --- ExpectedTensors -----------------------------------------------------------------------------

TEST(ExpectedTensorsTest, LlamaShapes) {
  ModelConfig c = TinyConfig();
  c.head_dim = 6;  // Explicit head_dim: q is heads * head_dim wide, not hidden.
  const auto specs = SpecMap(c);
  EXPECT_EQ(specs.size(), 1 + 2 * 9 + 2u);
  EXPECT_EQ(specs.at("model.embed_tokens.weight"), std::vector<int64_t>({16, 8}));
  EXPECT_EQ(specs.at("model.layers.1.input_layernorm.weight"), std::vector<int64_t>({8}));
  EXPECT_EQ(specs.at("model.layers.1.self_attn.q_proj.weight"), std::vector<int64_t>({12, 8}));
  EXPECT_EQ(specs.at("model.layers.1.self_attn.k_proj.weight"), std::vector<int64_t>({6, 8}));
  EXPECT_EQ(specs.at("model.layers.1.self_attn.v_proj.weight"), std::vector<int64_t>({6, 8}));
  EXPECT_EQ(specs.at("model.layers.1.self_attn.o_proj.weight"), std::vector<int64_t>({8, 12}));
  EXPECT_EQ(specs.at("model.layers.0.post_attention_layernorm.weight"), std::vector<int64_t>({8}));
  EXPECT_EQ(specs.at("model.layers.0.mlp.gate_proj.weight"), std::vector<int64_t>({12, 8}));
  EXPECT_EQ(specs.at("model.layers.0.mlp.up_proj.weight"), std::vector<int64_t>({12, 8}));
  EXPECT_EQ(specs.at("model.layers.0.mlp.down_proj.weight"), std::vector<int64_t>({8, 12}));
  EXPECT_EQ(specs.at("model.norm.weight"), std::vector<int64_t>({8}));
  EXPECT_EQ(specs.at("lm_head.weight"), std::vector<int64_t>({16, 8}));
  EXPECT_EQ(specs.count("model.layers.0.self_attn.q_proj.bias"), 0u);
  EXPECT_EQ(specs.count("model.layers.2.input_layernorm.weight"), 0u);
}

TEST(ExpectedTensorsTest, TiedEmbeddingsHaveNoLmHead) {
  ModelConfig c = TinyConfig();
  c.tie_word_embeddings = true;
  EXPECT_EQ(SpecMap(c).count("lm_head.weight"), 0u);
}

TEST(ExpectedTensorsTest, Biases) {
  ModelConfig c = TinyConfig();
  c.attention_bias = true;  // qwen2: q/k/v only.
  auto specs = SpecMap(c);
  EXPECT_EQ(specs.at("model.layers.0.self_attn.q_proj.bias"), std::vector<int64_t>({8}));
  EXPECT_EQ(specs.at("model.layers.0.self_attn.k_proj.bias"), std::vector<int64_t>({4}));
  EXPECT_EQ(specs.at("model.layers.0.self_attn.v_proj.bias"), std::vector<int64_t>({4}));
  EXPECT_EQ(specs.count("model.layers.0.self_attn.o_proj.bias"), 0u);

  c.o_proj_bias = true;  // llama attention_bias.
  c.mlp_bias = true;
  specs = SpecMap(c);
  EXPECT_EQ(specs.at("model.layers.1.self_attn.o_proj.bias"), std::vector<int64_t>({8}));
  EXPECT_EQ(specs.at("model.layers.1.mlp.gate_proj.bias"), std::vector<int64_t>({12}));
  EXPECT_EQ(specs.at("model.layers.1.mlp.up_proj.bias"), std::vector<int64_t>({12}));
  EXPECT_EQ(specs.at("model.layers.1.mlp.down_proj.bias"), std::vector<int64_t>({8}));
  EXPECT_EQ(specs.size(), 1 + 2 * (9 + 7) + 2u);
}

TEST(ExpectedTensorsTest, MultiQueryShapes) {
  ModelConfig c = TinyConfig();
  c.num_attention_heads = 4;
  c.num_key_value_heads = 1;
  c.head_dim = 2;
  const auto specs = SpecMap(c);
  EXPECT_EQ(specs.at("model.layers.0.self_attn.q_proj.weight"), std::vector<int64_t>({8, 8}));
  EXPECT_EQ(specs.at("model.layers.0.self_attn.k_proj.weight"), std::vector<int64_t>({2, 8}));
}

// --- OpenCheckpoint: one file
// ----------------------------------------------------------------------

TEST(OpenCheckpointTest, ServesEveryTensorOfASingleFile) {
  TempDir dir;
  const ModelConfig c = TinyConfig();
  std::vector<TestTensor> tensors = CheckpointTensors(c);
  // Extra tensors of other models or of old exports are ignored.
  tensors.push_back(
      {"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {2}, F32Bytes({1.0f, 0.01f})});
  tensors.push_back({"model.extra.step", "I64", {1}, std::string(8, '\0')});
  WriteFile(dir / "model.safetensors", SafetensorsBytes(tensors, {{"format", "pt"}}));

  StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint(dir.path());
  ASSERT_TRUE(source.ok()) << source.status();
  ExpectServesCheckpoint(**source, c);
  EXPECT_TRUE((*source)->Contains("model.layers.0.self_attn.rotary_emb.inv_freq"));
}

// Issue 16 (identity contract): the block hash seed comes from what defines the computation,
// never from a path. The same files in two directories are one identity; other weights another.
TEST(OpenCheckpointTest, IdentityIsTheFilesNotTheirPath) {
  TempDir a, b, c;
  const ModelConfig config = TinyConfig();
  const std::string bytes = SafetensorsBytes(CheckpointTensors(config), {{"format", "pt"}});
  WriteFile(a / "model.safetensors", bytes);
  WriteFile(b / "model.safetensors", bytes);
  std::vector<TestTensor> other = CheckpointTensors(config);
  other.push_back({"model.extra.step", "I64", {1}, std::string(8, '\0')});
  WriteFile(c / "model.safetensors", SafetensorsBytes(other, {{"format", "pt"}}));
  auto from_a = OpenCheckpoint(a.path());
  auto from_b = OpenCheckpoint(b.path());
  auto from_c = OpenCheckpoint(c.path());
  ASSERT_TRUE(from_a.ok() && from_b.ok() && from_c.ok());
  EXPECT_FALSE((*from_a)->Identity().empty());
  EXPECT_EQ((*from_a)->Identity(), (*from_b)->Identity());
  EXPECT_NE((*from_a)->Identity(), (*from_c)->Identity());
  EXPECT_EQ((*from_a)->Identity().find(a.path().string()), std::string::npos);
  // Random weights: the seed.
  EXPECT_EQ(RandomWeights(config, 1)->Identity(), RandomWeights(config, 1)->Identity());
  EXPECT_NE(RandomWeights(config, 1)->Identity(), RandomWeights(config, 2)->Identity());
  EXPECT_NE(RandomWeights(config, 1)->Identity(), (*from_a)->Identity());
}

TEST(OpenCheckpointTest, WrongShapeNamesFileTensorAndShapes) {
  TempDir dir;
  const ModelConfig c = TinyConfig();
  WriteFile(dir / "model.safetensors", SafetensorsBytes(CheckpointTensors(c)));
  StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint(dir.path());
  ASSERT_TRUE(source.ok()) << source.status();
  const std::vector<int64_t> wrong = {8, 4};
  const Status status = (*source)->Find("model.layers.0.self_attn.q_proj.weight", wrong).status();
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), (dir / "model.safetensors").string() +
                                  ": tensor 'model.layers.0.self_attn.q_proj.weight' has shape "
                                  "[8, 8], expected [8, 4]");
}

TEST(OpenCheckpointTest, MissingTensorNamesFileAndTensor) {
  TempDir dir;
  const ModelConfig c = TinyConfig();
  std::vector<TestTensor> tensors = CheckpointTensors(c);
  std::erase_if(tensors, [](const TestTensor& t) { return t.name == "model.norm.weight"; });
  WriteFile(dir / "model.safetensors", SafetensorsBytes(tensors));
  StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint(dir.path());
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_FALSE((*source)->Contains("model.norm.weight"));
  const std::vector<int64_t> shape = {8};
  ExpectError((*source)->Find("model.norm.weight", shape).status(), StatusCode::kNotFound,
              {(dir / "model.safetensors").string(), "'model.norm.weight'"});
}

TEST(OpenCheckpointTest, TiedCheckpointMayStillHoldLmHead) {
  TempDir dir;
  ModelConfig c = TinyConfig();
  c.tie_word_embeddings = true;
  std::vector<TestTensor> tensors = CheckpointTensors(c);
  tensors.push_back({"lm_head.weight", "BF16", {16, 8}, Bf16Bytes(std::vector<float>(128, 1.0f))});
  WriteFile(dir / "model.safetensors", SafetensorsBytes(tensors));
  StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint(dir.path());
  ASSERT_TRUE(source.ok()) << source.status();
  ExpectServesCheckpoint(**source, c);
}

TEST(OpenCheckpointTest, UnsupportedDTypeOfAWantedTensor) {
  TempDir dir;
  WriteFile(dir / "model.safetensors",
            SafetensorsBytes({{"model.norm.weight", "F64", {8}, std::string(64, '\0')}}));
  StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint(dir.path());
  ASSERT_TRUE(source.ok()) << source.status();
  const std::vector<int64_t> shape = {8};
  ExpectError((*source)->Find("model.norm.weight", shape).status(), StatusCode::kInvalidArgument,
              {"model.safetensors", "'model.norm.weight'", "'F64'"});
}

TEST(OpenCheckpointTest, NoCheckpointIsNotFound) {
  TempDir dir;
  const Status status = OpenCheckpoint(dir.path()).status();
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_EQ(status.message(),
            dir.path().string() + ": no model.safetensors or model.safetensors.index.json");
  ExpectError(OpenCheckpoint(dir / "absent").status(), StatusCode::kNotFound,
              {(dir / "absent").string()});
}

TEST(OpenCheckpointTest, TruncatedFileIsDataLoss) {
  TempDir dir;
  const std::string bytes = SafetensorsBytes(CheckpointTensors(TinyConfig()));
  WriteFile(dir / "model.safetensors", bytes.substr(0, bytes.size() - 100));
  ExpectError(OpenCheckpoint(dir.path()).status(), StatusCode::kDataLoss,
              {(dir / "model.safetensors").string(), "truncated"});
}

TEST(OpenCheckpointTest, BadHeaderNamesTheFile) {
  TempDir dir;
  WriteFile(dir / "model.safetensors", testing::SafetensorsWithHeader("{\"a\": nonsense}"));
  ExpectError(OpenCheckpoint(dir.path()).status(), StatusCode::kInvalidArgument,
              {(dir / "model.safetensors").string(), "malformed JSON"});
}

TEST(OpenCheckpointTest, ConcurrentFinds) {
  TempDir dir;
  const ModelConfig c = TinyConfig();
  WriteFile(dir / "model.safetensors", SafetensorsBytes(CheckpointTensors(c)));
  StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint(dir.path());
  ASSERT_TRUE(source.ok()) << source.status();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] { ExpectServesCheckpoint(**source, c); });
  }
  for (std::thread& t : threads) t.join();
}

// --- OpenCheckpoint: shards
// ------------------------------------------------------------------------

// Splits the checkpoint's tensors over `shards` files, round-robin, and writes the index.
void WriteSharded(const TempDir& dir, const std::vector<TestTensor>& tensors, int shards) {
  std::vector<std::vector<TestTensor>> parts(static_cast<size_t>(shards));
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const size_t shard = i % static_cast<size_t>(shards);
    parts[shard].push_back(tensors[i]);
    weight_map[tensors[i].name] = "model-0000" + std::to_string(shard + 1) + "-of-0000" +
                                  std::to_string(shards) + ".safetensors";
  }
  for (int s = 0; s < shards; ++s) {
    WriteFile(dir / ("model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(shards) +
                     ".safetensors"),
              SafetensorsBytes(parts[static_cast<size_t>(s)]));
  }
  const nlohmann::json index = {{"metadata", {{"total_size", 12345}}}, {"weight_map", weight_map}};
  WriteFile(dir / "model.safetensors.index.json", index.dump(2));
}

TEST(OpenCheckpointShardedTest, ServesTensorsFromEveryShard) {
  TempDir dir;
  const ModelConfig c = TinyConfig();
  WriteSharded(dir, CheckpointTensors(c), 3);
  StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint(dir.path());
  ASSERT_TRUE(source.ok()) << source.status();
  ExpectServesCheckpoint(**source, c);
}

TEST(OpenCheckpointShardedTest, WrongShapeNamesTheShard) {
  TempDir dir;
  const ModelConfig c = TinyConfig();
  WriteSharded(dir, CheckpointTensors(c), 2);
  StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint(dir.path());
  ASSERT_TRUE(source.ok()) << source.status();
  const std::vector<int64_t> wrong = {1};
  // Tensor 0 (embed_tokens) lives in the first shard.
  ExpectError((*source)->Find("model.embed_tokens.weight", wrong).status(),
              StatusCode::kInvalidArgument,
              {(dir / "model-00001-of-00002.safetensors").string(),
               "'model.embed_tokens.weight' has shape [16, 8], expected [1]"});
}

TEST(OpenCheckpointShardedTest, UnlistedTensorNamesTheIndex) {
  TempDir dir;
  WriteSharded(dir, CheckpointTensors(TinyConfig()), 2);
  StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint(dir.path());
  ASSERT_TRUE(source.ok()) << source.status();
  const std::vector<int64_t> shape = {1};
  ExpectError(
      (*source)->Find("model.layers.9.mlp.up_proj.weight", shape).status(), StatusCode::kNotFound,
      {(dir / "model.safetensors.index.json").string(), "'model.layers.9.mlp.up_proj.weight'"});
}

TEST(OpenCheckpointShardedTest, TensorMissingFromItsShard) {
  TempDir dir;
  std::vector<TestTensor> tensors = CheckpointTensors(TinyConfig());
  WriteSharded(dir, tensors, 2);
  // Rewrite shard 2 without one of its tensors; the index still places it there.
  std::vector<TestTensor> second;
  for (size_t i = 1; i < tensors.size(); i += 2) second.push_back(tensors[i]);
  const std::string dropped = second.front().name;
  second.erase(second.begin());
  const auto shard = dir / "model-00002-of-00002.safetensors";
  WriteFile(shard, SafetensorsBytes(second));
  ExpectError(OpenCheckpoint(dir.path()).status(), StatusCode::kNotFound,
              {shard.string(), "'" + dropped + "'", "model.safetensors.index.json"});
}

TEST(OpenCheckpointShardedTest, MissingShardFile) {
  TempDir dir;
  WriteSharded(dir, CheckpointTensors(TinyConfig()), 2);
  const auto shard = dir / "model-00002-of-00002.safetensors";
  std::filesystem::remove(shard);
  ExpectError(OpenCheckpoint(dir.path()).status(), StatusCode::kNotFound, {shard.string()});
}

TEST(OpenCheckpointShardedTest, TruncatedShard) {
  TempDir dir;
  WriteSharded(dir, CheckpointTensors(TinyConfig()), 2);
  const auto shard = dir / "model-00001-of-00002.safetensors";
  const std::string bytes = ReadFile(shard);
  WriteFile(shard, bytes.substr(0, bytes.size() / 2));
  ExpectError(OpenCheckpoint(dir.path()).status(), StatusCode::kDataLoss, {shard.string()});
}

TEST(OpenCheckpointShardedTest, MalformedIndex) {
  TempDir dir;
  const auto index = dir / "model.safetensors.index.json";
  WriteFile(index, "{\"weight_map\": {\"a\": ");
  ExpectError(OpenCheckpoint(dir.path()).status(), StatusCode::kInvalidArgument,
              {index.string(), "malformed JSON"});
  WriteFile(index, R"({"weight_map": {"a": "../../etc/passwd"}})");
  ExpectError(OpenCheckpoint(dir.path()).status(), StatusCode::kInvalidArgument,
              {index.string(), "'weight_map.a'"});
}

TEST(OpenCheckpointShardedTest, SingleFileWinsOverIndex) {
  TempDir dir;
  const ModelConfig c = TinyConfig();
  WriteFile(dir / "model.safetensors", SafetensorsBytes(CheckpointTensors(c)));
  WriteFile(dir / "model.safetensors.index.json", "not even json");
  StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint(dir.path());
  ASSERT_TRUE(source.ok()) << source.status();
  ExpectServesCheckpoint(**source, c);
}

}  // namespace
}  // namespace tandem::model
