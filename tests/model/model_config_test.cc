#include "model/model_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "model/weight_source.h"
#include "test_files.h"

namespace tandem::model {
namespace {

using json = nlohmann::json;
using testing::ExpectError;
using testing::TempDir;
using testing::WriteFile;

constexpr char kSource[] = "models/x/config.json";

// A Llama-3-shaped config (sizes shrunk).
json LlamaJson() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 1000,
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-05,
    "hidden_act": "silu",
    "rope_theta": 500000.0,
    "rope_scaling": null,
    "attention_bias": false,
    "mlp_bias": false,
    "tie_word_embeddings": false,
    "torch_dtype": "bfloat16",
    "bos_token_id": 128000,
    "eos_token_id": 128001
  })");
}

StatusOr<ModelConfig> Parse(const json& j) { return ParseModelConfig(j.dump(), kSource); }

ModelConfig ParseOk(const json& j) {
  StatusOr<ModelConfig> config = Parse(j);
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : ModelConfig{};
}

TEST(ModelConfigTest, ParsesLlama) {
  const ModelConfig c = ParseOk(LlamaJson());
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 1000);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.intermediate_size, 688);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 1.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rope.partial_rotary_factor, 1.0);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({128001}));
  EXPECT_TRUE(c.Validate().ok());
}

TEST(ModelConfigTest, LlamaAttentionBiasCoversOutputProjection) {
  json j = LlamaJson();
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  const ModelConfig c = ParseOk(j);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.o_proj_bias);
  EXPECT_TRUE(c.mlp_bias);
}

TEST(ModelConfigTest, DefaultsWhenOptionalFieldsAreAbsent) {
  json j = LlamaJson();
  for (const char* key : {"num_key_value_heads", "max_position_embeddings", "rms_norm_eps",
                          "hidden_act", "rope_theta", "rope_scaling", "attention_bias", "mlp_bias",
                          "tie_word_embeddings", "torch_dtype", "bos_token_id", "eos_token_id"}) {
    j.erase(key);
  }
  const ModelConfig c = ParseOk(j);
  EXPECT_EQ(c.num_key_value_heads, 8);  // Plain multi-head attention.
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "");
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_TRUE(c.eos_token_ids.empty());
}

TEST(ModelConfigTest, GroupedAndMultiQueryAttention) {
  json j = LlamaJson();
  j["num_key_value_heads"] = 1;
  EXPECT_EQ(ParseOk(j).num_key_value_heads, 1);
  j["num_key_value_heads"] = 4;
  EXPECT_EQ(ParseOk(j).num_key_value_heads, 4);
  j["num_key_value_heads"] = 8;
  EXPECT_EQ(ParseOk(j).num_key_value_heads, 8);
  j["num_key_value_heads"] = 3;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "'num_key_value_heads'", "must divide num_attention_heads"});
}

TEST(ModelConfigTest, ExplicitHeadDim) {
  json j = LlamaJson();
  j["head_dim"] = 64;  // Not hidden / heads (Mistral Nemo does this).
  const ModelConfig c = ParseOk(j);
  EXPECT_EQ(c.head_dim, 64);
  j["head_dim"] = nullptr;
  EXPECT_EQ(ParseOk(j).head_dim, 32);
  j["head_dim"] = 33;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'head_dim'", "even"});
}

TEST(ModelConfigTest, HiddenSizeMustSplitIntoHeadsWithoutHeadDim) {
  json j = LlamaJson();
  j["hidden_size"] = 250;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'hidden_size'"});
  j["head_dim"] = 32;
  EXPECT_EQ(ParseOk(j).head_dim, 32);
}

TEST(ModelConfigTest, ParsesMistralSlidingWindow) {
  json j = LlamaJson();
  j["model_type"] = "mistral";
  j["attention_bias"] = true;  // Ignored: Mistral has no bias.
  j["sliding_window"] = 4096;
  ModelConfig c = ParseOk(j);
  EXPECT_EQ(c.model_type, "mistral");
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);

  j["sliding_window"] = nullptr;  // Mistral 7B v0.2 and later.
  EXPECT_FALSE(ParseOk(j).sliding_window.has_value());

  j.erase("sliding_window");  // transformers' MistralConfig default.
  EXPECT_EQ(ParseOk(j).sliding_window, 4096);

  j["sliding_window"] = 0;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'sliding_window'"});
}

TEST(ModelConfigTest, LlamaHasNoSlidingWindow) {
  json j = LlamaJson();
  j["sliding_window"] = 128;
  EXPECT_FALSE(ParseOk(j).sliding_window.has_value());
}

json Qwen2Json() {
  json j = LlamaJson();
  j["model_type"] = "qwen2";
  j["tie_word_embeddings"] = true;
  j["use_sliding_window"] = false;
  j["sliding_window"] = 32768;
  j["max_window_layers"] = 21;
  j["rope_theta"] = 1000000.0;
  j["eos_token_id"] = 151643;
  j.erase("bos_token_id");
  j.erase("attention_bias");
  return j;
}

TEST(ModelConfigTest, ParsesQwen2) {
  const ModelConfig c = ParseOk(Qwen2Json());
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.max_position_embeddings, 8192);
}

TEST(ModelConfigTest, Qwen2BiasIgnoresAttentionBiasField) {
  json j = Qwen2Json();
  j["attention_bias"] = false;
  EXPECT_TRUE(ParseOk(j).attention_bias);
  j["attention_bias"] = true;
  EXPECT_FALSE(ParseOk(j).o_proj_bias);
}

TEST(ModelConfigTest, Qwen2SlidingWindowOnlyWhenEnabledOnEveryLayer) {
  json j = Qwen2Json();
  j["use_sliding_window"] = true;
  j["max_window_layers"] = 0;  // Every layer at index >= 0 slides.
  EXPECT_EQ(ParseOk(j).sliding_window, 32768);

  j["max_window_layers"] = 2;  // No layer reaches index 2: full attention everywhere.
  EXPECT_FALSE(ParseOk(j).sliding_window.has_value());

  j.erase("max_window_layers");  // transformers' default, 28, exceeds the 2 layers.
  EXPECT_FALSE(ParseOk(j).sliding_window.has_value());

  j["max_window_layers"] = 1;  // Layer 0 full, layer 1 sliding.
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "'max_window_layers'", "mixing"});

  j["layer_types"] = {"sliding_attention", "sliding_attention"};
  EXPECT_EQ(ParseOk(j).sliding_window, 32768);
  j["layer_types"] = {"full_attention", "full_attention"};
  EXPECT_FALSE(ParseOk(j).sliding_window.has_value());
  j["layer_types"] = {"full_attention"};
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'layer_types'"});
  j["layer_types"] = {"chunked_attention", "full_attention"};
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "'layer_types'", "chunked_attention"});

  j.erase("layer_types");
  j["max_window_layers"] = 0;
  j["sliding_window"] = nullptr;
  EXPECT_FALSE(ParseOk(j).sliding_window.has_value());
  j.erase("sliding_window");  // transformers' default window.
  EXPECT_EQ(ParseOk(j).sliding_window, 4096);
}

TEST(ModelConfigTest, TokenIds) {
  json j = LlamaJson();
  j["eos_token_id"] = {128001, 128008, 128009};
  EXPECT_EQ(ParseOk(j).eos_token_ids, std::vector<int32_t>({128001, 128008, 128009}));
  j["eos_token_id"] = nullptr;
  EXPECT_TRUE(ParseOk(j).eos_token_ids.empty());
  j["bos_token_id"] = nullptr;
  EXPECT_FALSE(ParseOk(j).bos_token_id.has_value());
  j["eos_token_id"] = "2";
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'eos_token_id'"});
  j["eos_token_id"] = {1, "x"};
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'eos_token_id'"});
  j["eos_token_id"] = -1;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'eos_token_id'"});
  j["eos_token_id"] = 2;
  j["bos_token_id"] = {1, 2};
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'bos_token_id'"});
}

TEST(ModelConfigTest, DTypeInEitherSpelling) {
  json j = LlamaJson();
  j.erase("torch_dtype");
  j["dtype"] = "float16";  // transformers 5.
  EXPECT_EQ(ParseOk(j).torch_dtype, "float16");
  j["dtype"] = 16;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'dtype'"});
}

TEST(ModelConfigTest, SwishIsSilu) {
  json j = LlamaJson();
  j["hidden_act"] = "swish";
  EXPECT_EQ(ParseOk(j).hidden_act, "silu");
  j["hidden_act"] = "gelu";
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'hidden_act'", "gelu"});
}

TEST(ModelConfigTest, IntegerFieldsAcceptIntegralFloats) {
  json j = LlamaJson();
  j["max_position_embeddings"] = 4096.0;
  EXPECT_EQ(ParseOk(j).max_position_embeddings, 4096);
  j["hidden_size"] = 256.5;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'hidden_size'"});
}

// --- RoPE ---------------------------------------------------------------------------------------

enum class Spelling { kRopeScaling, kLegacyType, kRopeParameters };

std::string SpellingName(Spelling s) {
  switch (s) {
    case Spelling::kRopeScaling:
      return "RopeScaling";
    case Spelling::kLegacyType:
      return "LegacyType";
    case Spelling::kRopeParameters:
      return "RopeParameters";
  }
  return "";
}

// Writes `params` (scaling keys, no type, no theta) into `j` in the given spelling.
json WithRope(json j, Spelling spelling, const std::string& type, double theta, json params) {
  switch (spelling) {
    case Spelling::kRopeScaling:
      j["rope_theta"] = theta;
      params["rope_type"] = type;
      j["rope_scaling"] = params;
      break;
    case Spelling::kLegacyType:
      j["rope_theta"] = theta;
      params["type"] = type;
      j["rope_scaling"] = params;
      break;
    case Spelling::kRopeParameters:
      j.erase("rope_theta");
      j.erase("rope_scaling");
      params["rope_type"] = type;
      params["rope_theta"] = theta;
      j["rope_parameters"] = params;
      break;
  }
  return j;
}

std::string Prefix(Spelling spelling) {
  return spelling == Spelling::kRopeParameters ? "rope_parameters." : "rope_scaling.";
}

std::string TypeField(Spelling spelling) {
  return Prefix(spelling) + (spelling == Spelling::kLegacyType ? "type" : "rope_type");
}

class RopeSpellingTest : public ::testing::TestWithParam<Spelling> {};

TEST_P(RopeSpellingTest, Default) {
  const ModelConfig c =
      ParseOk(WithRope(LlamaJson(), GetParam(), "default", 250000, json::object()));
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_DOUBLE_EQ(c.rope.theta, 250000);
  EXPECT_DOUBLE_EQ(c.rope.factor, 1.0);
}

TEST_P(RopeSpellingTest, Linear) {
  const ModelConfig c =
      ParseOk(WithRope(LlamaJson(), GetParam(), "linear", 10000, {{"factor", 4}}));
  EXPECT_EQ(c.rope.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
}

TEST_P(RopeSpellingTest, Dynamic) {
  const ModelConfig c =
      ParseOk(WithRope(LlamaJson(), GetParam(), "dynamic", 10000, {{"factor", 2.5}}));
  EXPECT_EQ(c.rope.type, RopeType::kDynamic);
  EXPECT_DOUBLE_EQ(c.rope.factor, 2.5);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
}

TEST_P(RopeSpellingTest, Llama3) {
  const ModelConfig c = ParseOk(WithRope(LlamaJson(), GetParam(), "llama3", 500000,
                                         {{"factor", 32.0},
                                          {"low_freq_factor", 1.0},
                                          {"high_freq_factor", 4.0},
                                          {"original_max_position_embeddings", 8192}}));
  EXPECT_EQ(c.rope.type, RopeType::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000);
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
}

TEST_P(RopeSpellingTest, Llama3NeedsHighAboveLow) {
  const Status status =
      Parse(WithRope(LlamaJson(), GetParam(), "llama3", 500000,
                     {{"factor", 8.0}, {"low_freq_factor", 4.0}, {"high_freq_factor", 4.0}}))
          .status();
  ExpectError(status, StatusCode::kInvalidArgument,
              {kSource, Prefix(GetParam()) + "high_freq_factor"});
}

TEST_P(RopeSpellingTest, Yarn) {
  json j = LlamaJson();
  j["max_position_embeddings"] = 131072;
  const ModelConfig c = ParseOk(WithRope(j, GetParam(), "yarn", 1000000,
                                         {{"factor", 4.0},
                                          {"original_max_position_embeddings", 32768},
                                          {"beta_fast", 16},
                                          {"beta_slow", 2},
                                          {"mscale", 0.707},
                                          {"mscale_all_dim", 1.0},
                                          {"attention_factor", 1.1},
                                          {"truncate", false}}));
  EXPECT_EQ(c.rope.type, RopeType::kYarn);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rope.beta_fast, 16);
  EXPECT_DOUBLE_EQ(c.rope.beta_slow, 2);
  EXPECT_EQ(c.rope.mscale, 0.707);
  EXPECT_EQ(c.rope.mscale_all_dim, 1.0);
  EXPECT_EQ(c.rope.attention_factor, 1.1);
  EXPECT_FALSE(c.rope.truncate);
}

TEST_P(RopeSpellingTest, YarnDefaults) {
  const ModelConfig c =
      ParseOk(WithRope(LlamaJson(), GetParam(), "yarn", 10000, {{"factor", 2.0}}));
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);  // max_position_embeddings.
  EXPECT_DOUBLE_EQ(c.rope.beta_fast, 32);
  EXPECT_DOUBLE_EQ(c.rope.beta_slow, 1);
  EXPECT_FALSE(c.rope.mscale.has_value());
  EXPECT_FALSE(c.rope.mscale_all_dim.has_value());
  EXPECT_FALSE(c.rope.attention_factor.has_value());
  EXPECT_TRUE(c.rope.truncate);
}

TEST_P(RopeSpellingTest, UnsupportedTypesNameTheField) {
  for (const std::string type : {"longrope", "su", "mrope", "ntk"}) {
    const Status status =
        Parse(WithRope(LlamaJson(), GetParam(), type, 10000, {{"factor", 2.0}})).status();
    ExpectError(status, StatusCode::kInvalidArgument,
                {kSource, "'" + TypeField(GetParam()) + "'", "'" + type + "'"});
  }
}

TEST_P(RopeSpellingTest, ScalingTypesNeedAFactor) {
  for (const std::string type : {"linear", "dynamic", "llama3", "yarn"}) {
    const Status status =
        Parse(WithRope(LlamaJson(), GetParam(), type, 10000, json::object())).status();
    ExpectError(status, StatusCode::kInvalidArgument, {kSource, Prefix(GetParam()) + "factor"});
  }
}

TEST_P(RopeSpellingTest, WrongTypesNameTheField) {
  Status status =
      Parse(WithRope(LlamaJson(), GetParam(), "linear", 10000, {{"factor", "2"}})).status();
  ExpectError(status, StatusCode::kInvalidArgument,
              {kSource, "'" + Prefix(GetParam()) + "factor'", "must be a number"});
  status = Parse(WithRope(LlamaJson(), GetParam(), "yarn", 10000,
                          {{"factor", 2}, {"original_max_position_embeddings", "big"}}))
               .status();
  ExpectError(status, StatusCode::kInvalidArgument,
              {kSource, Prefix(GetParam()) + "original_max_position_embeddings"});
  status = Parse(WithRope(LlamaJson(), GetParam(), "yarn", 10000, {{"factor", 2}, {"truncate", 1}}))
               .status();
  ExpectError(status, StatusCode::kInvalidArgument, {kSource, Prefix(GetParam()) + "truncate"});
  status = Parse(WithRope(LlamaJson(), GetParam(), "linear", 10000, {{"factor", -1}})).status();
  ExpectError(status, StatusCode::kInvalidArgument, {kSource, Prefix(GetParam()) + "factor"});
}

TEST_P(RopeSpellingTest, PartialRotaryFactorMustBeOne) {
  json j = WithRope(LlamaJson(), GetParam(), "default", 10000, {{"partial_rotary_factor", 1.0}});
  EXPECT_DOUBLE_EQ(ParseOk(j).rope.partial_rotary_factor, 1.0);
  j = WithRope(LlamaJson(), GetParam(), "default", 10000, {{"partial_rotary_factor", 0.5}});
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "'" + Prefix(GetParam()) + "partial_rotary_factor'", "0.5"});
}

INSTANTIATE_TEST_SUITE_P(Spellings, RopeSpellingTest,
                         ::testing::Values(Spelling::kRopeScaling, Spelling::kLegacyType,
                                           Spelling::kRopeParameters),
                         [](const auto& info) { return SpellingName(info.param); });

TEST(ModelConfigRopeTest, RopeParametersWithOnlyTheta) {
  json j = LlamaJson();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_theta", 1e6}};
  ModelConfig c = ParseOk(j);
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5e5}};
  EXPECT_DOUBLE_EQ(ParseOk(j).rope.theta, 5e5);
}

TEST(ModelConfigRopeTest, RopeParametersTakePrecedence) {
  json j = LlamaJson();
  j["rope_theta"] = 1.0;
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
  j["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 20000}, {"factor", 2.0}};
  const ModelConfig c = ParseOk(j);
  EXPECT_DOUBLE_EQ(c.rope.theta, 20000);
  EXPECT_DOUBLE_EQ(c.rope.factor, 2.0);
}

TEST(ModelConfigRopeTest, RopeParametersWithoutThetaFallBackToTopLevel) {
  json j = LlamaJson();
  j["rope_theta"] = 12345.0;
  j["rope_parameters"] = {{"rope_type", "default"}};
  EXPECT_DOUBLE_EQ(ParseOk(j).rope.theta, 12345.0);
}

TEST(ModelConfigRopeTest, PerLayerTypeRopeParametersAreRefused) {
  json j = LlamaJson();
  j["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}, {"rope_theta", 1e6}}},
                          {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 1e4}}}};
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "'rope_parameters.full_attention'"});
}

TEST(ModelConfigRopeTest, TopLevelPartialRotaryFactor) {
  json j = LlamaJson();
  j["partial_rotary_factor"] = 1.0;
  EXPECT_TRUE(Parse(j).ok());
  j["partial_rotary_factor"] = 0.25;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "'partial_rotary_factor'", "must be 1.0"});
}

TEST(ModelConfigRopeTest, ScalingWithoutTypeIsAnError) {
  json j = LlamaJson();
  j["rope_scaling"] = {{"factor", 2.0}};
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "'rope_scaling.rope_type' is missing"});
  j["rope_scaling"] = "linear";
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "'rope_scaling' must be an object"});
}

TEST(ModelConfigRopeTest, DefaultTypeIgnoresFactor) {
  json j = LlamaJson();
  j["rope_scaling"] = {{"rope_type", "default"}, {"factor", 8.0}};
  EXPECT_DOUBLE_EQ(ParseOk(j).rope.factor, 1.0);
}

TEST(ModelConfigRopeTest, NamesEveryRopeType) {
  EXPECT_EQ(RopeTypeName(RopeType::kDefault), "default");
  EXPECT_EQ(RopeTypeName(RopeType::kLinear), "linear");
  EXPECT_EQ(RopeTypeName(RopeType::kDynamic), "dynamic");
  EXPECT_EQ(RopeTypeName(RopeType::kLlama3), "llama3");
  EXPECT_EQ(RopeTypeName(RopeType::kYarn), "yarn");
}

TEST(ModelConfigRopeTest, BadTheta) {
  json j = LlamaJson();
  j["rope_theta"] = -5;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'rope_theta'"});
  j["rope_theta"] = "1e4";
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'rope_theta'"});
  j = LlamaJson();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 0}};
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "'rope_parameters.rope_theta'"});
}

// --- Bad input ----------------------------------------------------------------------------------

TEST(ModelConfigErrorTest, MalformedJson) {
  const StatusOr<ModelConfig> c =
      ParseModelConfig("{\"model_type\": \"llama\",\n  \"x\": }", kSource);
  ExpectError(c.status(), StatusCode::kInvalidArgument, {kSource, "malformed JSON", "line 2"});
  ExpectError(ParseModelConfig("", kSource).status(), StatusCode::kInvalidArgument, {kSource});
  ExpectError(ParseModelConfig("[1, 2]", kSource).status(), StatusCode::kInvalidArgument,
              {kSource, "object"});
  // Invalid UTF-8 and deep nesting must not throw either.
  ExpectError(ParseModelConfig("{\"model_type\": \"\xff\xfe\"}", kSource).status(),
              StatusCode::kInvalidArgument, {kSource});
  ExpectError(ParseModelConfig(std::string(100000, '['), kSource).status(),
              StatusCode::kInvalidArgument, {kSource});
}

TEST(ModelConfigErrorTest, UnknownModelType) {
  json j = LlamaJson();
  j["model_type"] = "gemma";
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "field 'model_type'", "'gemma'", "llama, mistral, qwen2"});
  j["model_type"] = "qwen2_moe";
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'qwen2_moe'"});
  j.erase("model_type");
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "field 'model_type' is missing"});
  j["model_type"] = 7;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'model_type'"});
}

TEST(ModelConfigErrorTest, WrongFieldTypesNameTheField) {
  struct Case {
    const char* field;
    json value;
  };
  const Case cases[] = {
      {"hidden_size", "abc"},
      {"vocab_size", true},
      {"num_attention_heads", json::array({8})},
      {"num_key_value_heads", "2"},
      {"intermediate_size", json::object()},
      {"num_hidden_layers", 2.5},
      {"max_position_embeddings", "8k"},
      {"rms_norm_eps", "1e-5"},
      {"tie_word_embeddings", "false"},
      {"attention_bias", 0},
      {"mlp_bias", "no"},
      {"hidden_act", 1},
      {"torch_dtype", 1},
      {"bos_token_id", 1.5},
      {"head_dim", "64"},
  };
  for (const Case& c : cases) {
    json j = LlamaJson();
    j[c.field] = c.value;
    ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
                {kSource, std::string("field '") + c.field + "'"});
  }
}

TEST(ModelConfigErrorTest, MissingAndNonPositiveSizes) {
  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads"}) {
    json j = LlamaJson();
    j.erase(field);
    ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
                {kSource, std::string("field '") + field + "' is missing"});
    j[field] = 0;
    ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
                {kSource, std::string("field '") + field + "' must be a positive integer"});
    j[field] = -4;
    ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
                {kSource, std::string("field '") + field + "' must be a positive integer"});
    j[field] = 1LL << 40;
    ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
                {kSource, std::string("field '") + field + "'"});
  }
  json j = LlamaJson();
  j["rms_norm_eps"] = 0;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument, {kSource, "'rms_norm_eps'"});
  j = LlamaJson();
  j["max_position_embeddings"] = -1;
  ExpectError(Parse(j).status(), StatusCode::kInvalidArgument,
              {kSource, "'max_position_embeddings'"});
}

TEST(ModelConfigErrorTest, LongValuesStayShortAndOneLine) {
  json j = LlamaJson();
  j["model_type"] = std::string(5000, 'x') + "\nsecond line";
  const Status status = Parse(j).status();
  ExpectError(status, StatusCode::kInvalidArgument, {kSource, "'model_type'"});
  EXPECT_LT(status.message().size(), 400u);
}

// --- Files --------------------------------------------------------------------------------------

TEST(LoadModelConfigTest, ReadsConfigAndGenerationConfig) {
  TempDir dir;
  json j = LlamaJson();
  j["eos_token_id"] = 128001;
  WriteFile(dir / "config.json", j.dump(2));
  StatusOr<ModelConfig> c = LoadModelConfig(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({128001}));

  WriteFile(dir / "generation_config.json",
            R"({"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
                "do_sample": true, "temperature": 0.6})");
  c = LoadModelConfig(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({128001, 128008, 128009}));

  WriteFile(dir / "generation_config.json", R"({"eos_token_id": 7})");
  c = LoadModelConfig(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({7}));

  WriteFile(dir / "generation_config.json", R"({"temperature": 0.7})");
  c = LoadModelConfig(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({128001}));
}

TEST(LoadModelConfigTest, BadGenerationConfigNamesItsFile) {
  TempDir dir;
  WriteFile(dir / "config.json", LlamaJson().dump());
  const std::string path = (dir / "generation_config.json").string();
  WriteFile(path, "{not json");
  ExpectError(LoadModelConfig(dir.path()).status(), StatusCode::kInvalidArgument,
              {path, "malformed JSON"});
  WriteFile(path, R"({"eos_token_id": "eos"})");
  ExpectError(LoadModelConfig(dir.path()).status(), StatusCode::kInvalidArgument,
              {path, "'eos_token_id'"});
}

TEST(LoadModelConfigTest, MissingConfigNamesTheFile) {
  TempDir dir;
  const StatusOr<ModelConfig> c = LoadModelConfig(dir / "nowhere");
  ExpectError(c.status(), StatusCode::kNotFound, {(dir / "nowhere" / "config.json").string()});
}

TEST(LoadModelConfigTest, ErrorsNameTheConfigPath) {
  TempDir dir;
  json j = LlamaJson();
  j["hidden_size"] = "abc";
  WriteFile(dir / "config.json", j.dump());
  ExpectError(LoadModelConfig(dir.path()).status(), StatusCode::kInvalidArgument,
              {(dir / "config.json").string() + ": field 'hidden_size'"});
}

// --- Built-in configs, Validate, Identity --------------------------------------------------------

int64_t ParameterCount(const ModelConfig& config) {
  int64_t total = 0;
  for (const TensorSpec& spec : ExpectedTensors(config)) total += NumElements(spec.shape);
  return total;
}

TEST(BuiltinModelConfigTest, Demo) {
  StatusOr<ModelConfig> c = BuiltinModelConfig("demo");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->hidden_size, 128);
  EXPECT_EQ(c->intermediate_size, 352);
  EXPECT_EQ(c->num_hidden_layers, 4);
  EXPECT_EQ(c->num_attention_heads, 4);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({2}));
  EXPECT_TRUE(c->Validate().ok());
  EXPECT_LT(ParameterCount(*c) * 4, 8 << 20);  // A few MB in fp32.
}

TEST(BuiltinModelConfigTest, Llama100m) {
  StatusOr<ModelConfig> c = BuiltinModelConfig("llama-100m");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->vocab_size, 32000);
  EXPECT_EQ(c->hidden_size, 768);
  EXPECT_EQ(c->intermediate_size, 2048);
  EXPECT_EQ(c->num_hidden_layers, 12);
  EXPECT_EQ(c->num_attention_heads, 12);
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c->rope.theta, 500000);
  EXPECT_FALSE(c->tie_word_embeddings);
  const int64_t params = ParameterCount(*c);
  EXPECT_GT(params, 90'000'000);
  EXPECT_LT(params, 130'000'000);
}

TEST(BuiltinModelConfigTest, UnknownNameListsTheValidOnes) {
  ExpectError(BuiltinModelConfig("llama-7b").status(), StatusCode::kNotFound,
              {"'llama-7b'", "demo", "llama-100m"});
}

TEST(ModelConfigValidateTest, RejectsInconsistentConfigs) {
  const ModelConfig good = *BuiltinModelConfig("demo");
  ASSERT_TRUE(good.Validate().ok());
  auto expect_invalid = [&](auto mutate, const std::string& field) {
    ModelConfig c = good;
    mutate(c);
    ExpectError(c.Validate(), StatusCode::kInvalidArgument, {"'" + field + "'"});
  };
  expect_invalid([](ModelConfig& c) { c.vocab_size = 0; }, "vocab_size");
  expect_invalid([](ModelConfig& c) { c.hidden_size = -1; }, "hidden_size");
  expect_invalid([](ModelConfig& c) { c.intermediate_size = 0; }, "intermediate_size");
  expect_invalid([](ModelConfig& c) { c.num_hidden_layers = 0; }, "num_hidden_layers");
  expect_invalid([](ModelConfig& c) { c.num_attention_heads = 0; }, "num_attention_heads");
  expect_invalid([](ModelConfig& c) { c.num_key_value_heads = 0; }, "num_key_value_heads");
  expect_invalid([](ModelConfig& c) { c.num_key_value_heads = 3; }, "num_key_value_heads");
  expect_invalid([](ModelConfig& c) { c.head_dim = 0; }, "head_dim");
  expect_invalid([](ModelConfig& c) { c.head_dim = 31; }, "head_dim");
  expect_invalid([](ModelConfig& c) { c.max_position_embeddings = 0; }, "max_position_embeddings");
  expect_invalid([](ModelConfig& c) { c.rms_norm_eps = 0; }, "rms_norm_eps");
  expect_invalid([](ModelConfig& c) { c.hidden_act = "gelu"; }, "hidden_act");
  expect_invalid([](ModelConfig& c) { c.model_type = "gpt2"; }, "model_type");
  expect_invalid([](ModelConfig& c) { c.sliding_window = 0; }, "sliding_window");
  expect_invalid([](ModelConfig& c) { c.rope.theta = 0; }, "rope_theta");
  expect_invalid([](ModelConfig& c) { c.rope.partial_rotary_factor = 0.5; },
                 "partial_rotary_factor");
  expect_invalid(
      [](ModelConfig& c) {
        c.rope.type = RopeType::kLinear;
        c.rope.factor = 0;
      },
      "rope_scaling.factor");
  expect_invalid([](ModelConfig& c) { c.eos_token_ids = {-1}; }, "eos_token_id");
  expect_invalid([](ModelConfig& c) { c.o_proj_bias = true; }, "attention_bias");
}

TEST(ModelConfigIdentityTest, DependsOnShapesAndRopeOnly) {
  const ModelConfig base = *BuiltinModelConfig("demo");
  const std::string id = base.Identity();
  EXPECT_NE(id.find("llama"), std::string::npos);
  EXPECT_EQ(id, base.Identity());

  ModelConfig same = base;
  same.eos_token_ids = {5, 6};
  same.bos_token_id = 9;
  same.torch_dtype = "bfloat16";
  EXPECT_EQ(same.Identity(), id);

  std::vector<ModelConfig> variants;
  auto vary = [&](auto mutate) {
    ModelConfig c = base;
    mutate(c);
    variants.push_back(c);
  };
  vary([](ModelConfig& c) { c.model_type = "mistral"; });
  vary([](ModelConfig& c) { c.vocab_size++; });
  vary([](ModelConfig& c) { c.hidden_size *= 2; });
  vary([](ModelConfig& c) { c.intermediate_size++; });
  vary([](ModelConfig& c) { c.num_hidden_layers++; });
  vary([](ModelConfig& c) { c.num_attention_heads = 8; });
  vary([](ModelConfig& c) { c.num_key_value_heads = 4; });
  vary([](ModelConfig& c) { c.head_dim = 64; });
  vary([](ModelConfig& c) { c.max_position_embeddings = 4096; });
  vary([](ModelConfig& c) { c.rms_norm_eps = 1e-6; });
  vary([](ModelConfig& c) { c.attention_bias = true; });
  vary([](ModelConfig& c) { c.mlp_bias = true; });
  vary([](ModelConfig& c) { c.tie_word_embeddings = true; });
  vary([](ModelConfig& c) { c.sliding_window = 1024; });
  vary([](ModelConfig& c) { c.rope.theta = 500000; });
  vary([](ModelConfig& c) {
    c.rope.type = RopeType::kLinear;
    c.rope.factor = 2;
  });
  vary([](ModelConfig& c) {
    c.rope.type = RopeType::kYarn;
    c.rope.factor = 2;
  });
  vary([](ModelConfig& c) {
    c.rope.type = RopeType::kYarn;
    c.rope.factor = 2;
    c.rope.beta_fast = 16;
  });
  vary([](ModelConfig& c) {
    c.rope.type = RopeType::kLlama3;
    c.rope.factor = 8;
  });
  vary([](ModelConfig& c) {
    c.rope.type = RopeType::kLlama3;
    c.rope.factor = 8;
    c.rope.original_max_position_embeddings = 1024;
  });
  std::set<std::string> ids = {id};
  for (const ModelConfig& c : variants) ids.insert(c.Identity());
  EXPECT_EQ(ids.size(), variants.size() + 1);
}

TEST(ModelConfigIdentityTest, SameForBothRopeSpellings) {
  json classic = LlamaJson();
  classic["rope_scaling"] = {{"rope_type", "llama3"},
                             {"factor", 8.0},
                             {"low_freq_factor", 1.0},
                             {"high_freq_factor", 4.0},
                             {"original_max_position_embeddings", 8192}};
  json v5 = LlamaJson();
  v5.erase("rope_theta");
  v5.erase("rope_scaling");
  v5["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                           {"factor", 8.0},           {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  EXPECT_EQ(ParseOk(classic).Identity(), ParseOk(v5).Identity());
}

}  // namespace
}  // namespace tandem::model
