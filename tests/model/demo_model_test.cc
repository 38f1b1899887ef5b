#include "model/demo_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "model/chat_template.h"
#include "model/model_config.h"
#include "test_files.h"
#ifdef TANDEM_HAVE_TOKENIZERS
#include "model/tokenizer/tokenizer.h"
#endif

namespace tandem::model {
namespace {

using testing::TempDir;

TEST(DemoModelTest, FilesAreDeterministic) {
  StatusOr<DemoModelFiles> a = MakeDemoModelFiles();
  StatusOr<DemoModelFiles> b = MakeDemoModelFiles();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->config_json, b->config_json);
  EXPECT_EQ(a->tokenizer_json, b->tokenizer_json);
  EXPECT_EQ(a->tokenizer_config_json, b->tokenizer_config_json);
}

TEST(DemoModelTest, ConfigMatchesTheBuiltinDemo) {
  TempDir dir;
  ASSERT_TRUE(WriteDemoModel(dir.path() / "demo").ok());
  StatusOr<ModelConfig> config = LoadModelConfig(dir.path() / "demo");
  ASSERT_TRUE(config.ok()) << config.status();
  StatusOr<ModelConfig> builtin = BuiltinModelConfig("demo");
  ASSERT_TRUE(builtin.ok()) << builtin.status();
  EXPECT_EQ(config->Identity(), builtin->Identity());
  EXPECT_EQ(config->vocab_size, 512);
  EXPECT_EQ(config->num_hidden_layers, builtin->num_hidden_layers);
  EXPECT_EQ(config->head_dim, builtin->head_dim);
  EXPECT_EQ(config->bos_token_id, builtin->bos_token_id);
  // generation_config.json adds <|eot_id|>, which ends a chat turn.
  EXPECT_EQ(config->eos_token_ids, (std::vector<int32_t>{2, 3}));
}

TEST(DemoModelTest, RewritingKeepsTheDirectoryValid) {
  TempDir dir;
  ASSERT_TRUE(WriteDemoModel(dir.path()).ok());
  ASSERT_TRUE(WriteDemoModel(dir.path()).ok());
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"config.json", "generation_config.json",
                                             "tokenizer.json", "tokenizer_config.json"}));
}

TEST(DemoModelTest, ChatTemplateRenders) {
  TempDir dir;
  ASSERT_TRUE(WriteDemoModel(dir.path()).ok());
  StatusOr<std::unique_ptr<ChatTemplate>> chat = ChatTemplate::Load(dir.path());
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ((*chat)->bos_token(), "<|begin_of_text|>");
  EXPECT_EQ((*chat)->eos_token(), "<|end_of_text|>");
  const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(
      R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}])");
  StatusOr<std::string> text = (*chat)->Render(messages, /*add_generation_prompt=*/true);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "<|begin_of_text|><|start|>system\nBe brief.<|eot_id|><|start|>user\nHi!<|eot_id|>"
            "<|start|>assistant\n");
}

#ifdef TANDEM_HAVE_TOKENIZERS

class DemoTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(WriteDemoModel(dir_.path()).ok());
    StatusOr<std::unique_ptr<tokenizer::Tokenizer>> loaded = tokenizer::LoadTokenizer(dir_.path());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    tokenizer_ = std::move(loaded).value();
  }

  std::string RoundTrip(const std::string& text) {
    StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, /*add_special_tokens=*/true);
    EXPECT_TRUE(ids.ok()) << ids.status();
    if (!ids.ok()) return "";
    EXPECT_FALSE(ids->empty());
    if (!ids->empty()) {
      EXPECT_EQ(ids->front(), 1) << "bos first";
    }
    StatusOr<std::string> decoded = tokenizer_->Decode(*ids, /*skip_special_tokens=*/true);
    EXPECT_TRUE(decoded.ok()) << decoded.status();
    return decoded.ok() ? *decoded : "";
  }

  TempDir dir_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
};

TEST_F(DemoTokenizerTest, VocabularyHas512Tokens) {
  EXPECT_EQ(tokenizer_->vocab_size(), 512);
  for (int32_t id = 0; id < 512; ++id) {
    EXPECT_TRUE(tokenizer_->IdToToken(id).has_value()) << "id " << id;
  }
}

TEST_F(DemoTokenizerTest, SpecialTokensMatchTheConfig) {
  StatusOr<ModelConfig> config = LoadModelConfig(dir_.path());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(tokenizer_->TokenToId("<|begin_of_text|>"), config->bos_token_id);
  EXPECT_EQ(tokenizer_->TokenToId("<|end_of_text|>"), config->eos_token_ids.at(0));
  EXPECT_EQ(tokenizer_->TokenToId("<|eot_id|>"), config->eos_token_ids.at(1));
  for (int32_t id : {0, 1, 2, 3}) EXPECT_TRUE(tokenizer_->IsSpecial(id)) << id;
  EXPECT_FALSE(tokenizer_->IsSpecial(4));
}

TEST_F(DemoTokenizerTest, RoundTripsAsciiAndUtf8) {
  for (const std::string text :
       {"Hello, world!", "The quick brown fox jumps over the lazy dog.",
        "  leading spaces,\ttabs and\nnew lines  ", "It's 2048 tokens per second; don't worry.",
        "caf\xC3\xA9 na\xC3\xAFve \xE2\x80\x94 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x99\x82",
        "~!@#$%^&*()_+{}|:\"<>?"}) {
    EXPECT_EQ(RoundTrip(text), text);
  }
}

TEST_F(DemoTokenizerTest, MergesShortenEnglish) {
  const std::string text = "Hello, world! The model reads the prompt and writes the answer.";
  StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, /*add_special_tokens=*/false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_LT(ids->size(), text.size() / 2) << "merges should cover common words";
  StatusOr<std::vector<int32_t>> the = tokenizer_->Encode(" the", /*add_special_tokens=*/false);
  ASSERT_TRUE(the.ok());
  EXPECT_EQ(the->size(), 1u);
}

TEST_F(DemoTokenizerTest, ChatPromptEncodesSpecialTokens) {
  StatusOr<std::unique_ptr<ChatTemplate>> chat = ChatTemplate::Load(dir_.path());
  ASSERT_TRUE(chat.ok()) << chat.status();
  StatusOr<std::string> text = (*chat)->Render(
      nlohmann::ordered_json::parse(R"([{"role": "user", "content": "Hi"}])"), true);
  ASSERT_TRUE(text.ok()) << text.status();
  StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(*text, /*add_special_tokens=*/false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_GE(ids->size(), 5u);
  EXPECT_EQ((*ids)[0], 1);                                // <|begin_of_text|>
  EXPECT_EQ((*ids)[1], 0);                                // <|start|>
  EXPECT_EQ(std::count(ids->begin(), ids->end(), 3), 1);  // <|eot_id|>
  StatusOr<std::string> decoded = tokenizer_->Decode(*ids, /*skip_special_tokens=*/false);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, *text);
}

#endif  // TANDEM_HAVE_TOKENIZERS

}  // namespace
}  // namespace tandem::model
