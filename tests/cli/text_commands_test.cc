// The commands that take and give text: `tandem tokenize`, `tandem detokenize`, and
// `tandem run --prompt / --chat` with `output_text`, on real tokenizers from ../shared/data.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_test_util.h"

namespace tandem::cli::testing {
namespace {

namespace fs = std::filesystem;

fs::path Tokenizers() { return fs::path(TANDEM_SOURCE_DIR) / "../shared/data/tokenizers"; }

class TextCommandsTest : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    if (!fs::exists(Tokenizers())) GTEST_SKIP() << "../shared/data absent: no real tokenizers";
  }

  // A tiny qwen2 model directory with the real Qwen2.5 tokenizer and chat template; weights are
  // random (--weights random), the vocabulary is the tokenizer's.
  fs::path QwenModel() {
    const fs::path m = dir_ / "qwen";
    fs::create_directories(m);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(Tokenizers() / "qwen2" / f, m / f);
    }
    nlohmann::json cfg = {{"model_type", "qwen2"},        {"vocab_size", 151936},
                          {"hidden_size", 32},            {"intermediate_size", 64},
                          {"num_hidden_layers", 1},       {"num_attention_heads", 2},
                          {"num_key_value_heads", 1},     {"max_position_embeddings", 512},
                          {"rms_norm_eps", 1e-6},         {"rope_theta", 1000000.0},
                          {"tie_word_embeddings", true},  {"eos_token_id", 151645}};
    std::ofstream(m / "config.json") << cfg.dump();
    return m;
  }
};

TEST_F(TextCommandsTest, TokenizeAndDetokenizeRoundTrip) {
  const std::string text = "Hello world! 你好，世界 🦙 tab\there";
  std::ofstream(dir_ / "in.txt") << text;
  for (const char* tok : {"llama3", "qwen2", "llama2/tokenizer.model", "gpt2"}) {
    SCOPED_TRACE(tok);
    const std::string path = (Tokenizers() / tok).string();
    const Result enc =
        RunTandem("tokenize --tokenizer " + path + " --json < " + (dir_ / "in.txt").string());
    ASSERT_EQ(enc.exit_code, 0) << enc.err;
    const auto ids = nlohmann::json::parse(enc.out)["ids"];
    ASSERT_FALSE(ids.empty());
    std::ofstream(dir_ / "ids.json") << enc.out;
    const Result dec = RunTandem("detokenize --tokenizer " + path + " < " +
                                 (dir_ / "ids.json").string());
    ASSERT_EQ(dec.exit_code, 0) << dec.err;
    EXPECT_EQ(dec.out, text);
  }
}

TEST_F(TextCommandsTest, AddSpecialTokensAddsBos) {
  std::ofstream(dir_ / "in.txt") << "Hello";
  const std::string path = (Tokenizers() / "llama3").string();
  const Result plain = RunTandem("tokenize --tokenizer " + path + " --json < " +
                                 (dir_ / "in.txt").string());
  const Result bos = RunTandem("tokenize --tokenizer " + path +
                               " --json --add-special-tokens < " + (dir_ / "in.txt").string());
  ASSERT_EQ(bos.exit_code, 0) << bos.err;
  auto p = nlohmann::json::parse(plain.out)["ids"];
  auto b = nlohmann::json::parse(bos.out)["ids"];
  ASSERT_EQ(b.size(), p.size() + 1);
  EXPECT_EQ(b[0], 128000);
}

TEST_F(TextCommandsTest, InvalidInputsGiveOneLine) {
  std::ofstream(dir_ / "bad.txt", std::ios::binary) << "ok \xff\xfe bad";
  const std::string path = (Tokenizers() / "qwen2").string();
  ExpectOneLineError(
      RunTandem("tokenize --tokenizer " + path + " < " + (dir_ / "bad.txt").string()), "UTF-8");
  std::ofstream(dir_ / "ids.txt") << "1 2 x";
  ExpectOneLineError(
      RunTandem("detokenize --tokenizer " + path + " < " + (dir_ / "ids.txt").string()), "'x'");
  ExpectOneLineError(RunTandem("tokenize --tokenizer " + (dir_ / "none").string() + " < " +
                               (dir_ / "ids.txt").string()),
                     "none");
}

TEST_F(TextCommandsTest, RunWithTextPromptPrintsOutputText) {
  const fs::path m = QwenModel();
  const Result r = RunTandem("run --model " + m.string() +
                             " --weights random --seed 1 --prompt 'The capital of France is' "
                             "--max-tokens 8 --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("output_text"));
  std::ofstream(dir_ / "ids.json") << nlohmann::json{{"ids", j["output_tokens"]}}.dump();
  const Result dec = RunTandem("detokenize --skip-special-tokens --tokenizer " + m.string() +
                               " < " + (dir_ / "ids.json").string());
  EXPECT_EQ(dec.out, j["output_text"].get<std::string>());
}

TEST_F(TextCommandsTest, ChatAppliesTheTemplate) {
  const fs::path m = QwenModel();
  const Result plain = RunTandem("run --model " + m.string() +
                                 " --weights random --prompt hi --max-tokens 2 --json");
  const Result chat = RunTandem("run --model " + m.string() +
                                " --weights random --chat --prompt hi --max-tokens 2 --json");
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  // The rendered conversation wraps the message in the template's system and role markers.
  EXPECT_GT(nlohmann::json::parse(chat.out)["prompt_tokens"].get<int>(),
            nlohmann::json::parse(plain.out)["prompt_tokens"].get<int>() + 5);
  std::ofstream(dir_ / "msgs.json")
      << R"({"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "hi"}]})";
  const Result stdin_chat = RunTandem("run --model " + m.string() +
                                      " --weights random --chat --max-tokens 2 --json < " +
                                      (dir_ / "msgs.json").string());
  ASSERT_EQ(stdin_chat.exit_code, 0) << stdin_chat.err;
  std::ofstream(dir_ / "bad.json") << R"({"messages": [{"content": "no role"}]})";
  ExpectOneLineError(RunTandem("run --model " + m.string() + " --weights random --chat < " +
                               (dir_ / "bad.json").string()),
                     "role");
}

}  // namespace
}  // namespace tandem::cli::testing
