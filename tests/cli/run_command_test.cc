// `tandem run` as a user runs it: the real binary, its JSON, and one clear line for each kind of
// bad input (never a crash).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "cli_test_util.h"

namespace tandem::cli::testing {
namespace {

namespace fs = std::filesystem;

const fs::path kGolden = fs::path(TANDEM_SOURCE_DIR) / "tests/data/golden";

class RunCommandTest : public TempDirTest {
 protected:
  // A copy of a golden model we can break.
  fs::path CopyModel(const std::string& name) {
    const fs::path dst = dir_ / name;
    fs::copy(kGolden / name, dst, fs::copy_options::recursive);
    return dst;
  }
  static void EditConfig(const fs::path& model, const std::function<void(nlohmann::json&)>& f) {
    nlohmann::json cfg;
    {
      std::ifstream in(model / "config.json");
      cfg = nlohmann::json::parse(in);
    }
    f(cfg);
    std::ofstream(model / "config.json") << cfg.dump(2);
  }
};

TEST_F(RunCommandTest, JsonOutputOnGoldenModel) {
  const std::string model = (kGolden / "llama_gqa_f32").string();
  const Result r = RunTandem("run --model " + model +
                             " --prompt-tokens 173,26,232,138,240 --max-tokens 24 --ignore-eos "
                             "--json --logits all");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  std::ifstream in(kGolden / "llama_gqa_f32/golden.json");
  const auto golden = nlohmann::json::parse(in);
  EXPECT_EQ(j["output_tokens"], golden["greedy"][0]["tokens"]);
  ASSERT_EQ(j["logits"].size(), 5u);  // One row per prompt position.
  EXPECT_EQ(j["logits"][0].size(), 256u);
}

TEST_F(RunCommandTest, LastLogitsAndSamplingFlags) {
  const std::string model = (kGolden / "qwen2_tied_bf16").string();
  const std::string args = "run --model " + model +
                           " --prompt-tokens 5,6,7 --max-tokens 6 --temperature 0.7 --top-p 0.9 "
                           "--top-k 40 --min-p 0.01 --seed 3 --logprobs 2 --json --logits last";
  const Result a = RunTandem(args);
  const Result b = RunTandem(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const auto j = nlohmann::json::parse(a.out);
  EXPECT_EQ(j["logits"].size(), 1u);
  EXPECT_EQ(j["logprobs"].size(), j["output_tokens"].size());
  EXPECT_EQ(j["logprobs"][0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(b.out)["output_tokens"], j["output_tokens"]) << "same seed";
}

TEST_F(RunCommandTest, DemoModelRunsWithoutCheckpoint) {
  const Result r = RunTandem("run --prompt-tokens 1,2,3 --max-tokens 8 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["output_tokens"].size(), 8u);
}

TEST_F(RunCommandTest, RandomWeightsForAnyConfig) {
  const std::string model = (kGolden / "mistral_window_bf16").string();
  const Result a = RunTandem("run --model " + model +
                             " --weights random --seed 5 --prompt-tokens 1,2 --max-tokens 4 "
                             "--ignore-eos --json");
  const Result b = RunTandem("run --model " + model +
                             " --weights random --seed 6 --prompt-tokens 1,2 --max-tokens 4 "
                             "--ignore-eos --json");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["output_tokens"].size(), 4u);
}

TEST_F(RunCommandTest, MissingDirectory) {
  ExpectOneLineError(RunTandem("run --model " + (dir_ / "nope").string() + " --prompt-tokens 1"),
                     "config.json");
}

TEST_F(RunCommandTest, MissingWeights) {
  const fs::path m = CopyModel("llama_gqa_f32");
  fs::remove(m / "model.safetensors");
  ExpectOneLineError(RunTandem("run --model " + m.string() + " --prompt-tokens 1"),
                     "model.safetensors");
}

TEST_F(RunCommandTest, TruncatedSafetensors) {
  const fs::path m = CopyModel("llama_gqa_f32");
  fs::resize_file(m / "model.safetensors", fs::file_size(m / "model.safetensors") / 2);
  ExpectOneLineError(RunTandem("run --model " + m.string() + " --prompt-tokens 1"),
                     "model.safetensors");
}

TEST_F(RunCommandTest, MissingShard) {
  const fs::path m = CopyModel("llama_yarn_sharded_bf16");
  fs::remove(m / "model-00003-of-00005.safetensors");
  ExpectOneLineError(RunTandem("run --model " + m.string() + " --prompt-tokens 1"),
                     "model-00003-of-00005.safetensors");
}

TEST_F(RunCommandTest, TensorWithWrongShape) {
  const fs::path m = CopyModel("llama_gqa_f32");
  EditConfig(m, [](nlohmann::json& c) { c["intermediate_size"] = 128; });
  ExpectOneLineError(RunTandem("run --model " + m.string() + " --prompt-tokens 1"),
                     "mlp.gate_proj.weight");
}

TEST_F(RunCommandTest, TensorWithWrongDtype) {
  // A safetensors file whose embedding is stored as I64.
  const fs::path m = dir_ / "int_model";
  fs::create_directories(m);
  fs::copy_file(kGolden / "llama_gqa_f32/config.json", m / "config.json");
  const std::string header =
      R"({"model.embed_tokens.weight":{"dtype":"I64","shape":[256,64],"data_offsets":[0,131072]}})";
  std::ofstream out(m / "model.safetensors", std::ios::binary);
  const uint64_t len = header.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << header << std::string(131072, '\1');
  out.close();
  ExpectOneLineError(RunTandem("run --model " + m.string() + " --prompt-tokens 1"), "I64");
}

TEST_F(RunCommandTest, UnknownModelType) {
  const fs::path m = CopyModel("llama_gqa_f32");
  EditConfig(m, [](nlohmann::json& c) { c["model_type"] = "gpt_neox"; });
  ExpectOneLineError(RunTandem("run --model " + m.string() + " --prompt-tokens 1"), "gpt_neox");
}

TEST_F(RunCommandTest, UnsupportedRopeType) {
  const fs::path m = CopyModel("llama_gqa_f32");
  EditConfig(m, [](nlohmann::json& c) {
    c["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 2.0}};
  });
  ExpectOneLineError(RunTandem("run --model " + m.string() + " --prompt-tokens 1"), "longrope");
}

TEST_F(RunCommandTest, MalformedConfig) {
  const fs::path m = CopyModel("llama_gqa_f32");
  std::ofstream(m / "config.json") << "{\"model_type\": \"llama\", ";
  ExpectOneLineError(RunTandem("run --model " + m.string() + " --prompt-tokens 1"),
                     "config.json");
}

TEST_F(RunCommandTest, BadFlags) {
  const std::string model = (kGolden / "llama_gqa_f32").string();
  ExpectOneLineError(RunTandem("run --model " + model + " --prompt-tokens 1,x"),
                     "--prompt-tokens");
  ExpectOneLineError(RunTandem("run --model " + model + " --prompt-tokens 1,999"), "999");
  ExpectOneLineError(RunTandem("run --model " + model + " --prompt-tokens 1 --logits some"),
                     "--logits");
  ExpectOneLineError(RunTandem("run --model " + model + " --prompt-tokens 1 --backend tpu"),
                     "tpu");
  ExpectOneLineError(RunTandem("run --model " + model), "prompt-tokens");
}

}  // namespace
}  // namespace tandem::cli::testing
