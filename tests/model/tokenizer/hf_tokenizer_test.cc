// HfTokenizer against the `tokenizers` library: the llama.cpp test vectors (generated with HF
// tokenizers) for the real gpt2, llama2, llama3 and qwen2 tokenizer.json files, decode round trips,
// and each component on small inline tokenizers.
#include "model/tokenizer/hf_tokenizer.h"

#include <gtest/gtest.h>

#include <utf8proc.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "model/tokenizer/decoder.h"
#include "model/tokenizer/normalizer.h"
#include "model/tokenizer/pre_tokenizer.h"
#include "model/tokenizer/utf8.h"
#include "vocab_vectors.h"

namespace tandem::tokenizer {
namespace {

using Json = nlohmann::json;
using testing::ReadVocabVectors;
using testing::SharedDataDir;
using testing::VocabCase;

// ---- Real vocabularies ----

// Loads each real tokenizer.json once for the whole test binary (llama3's takes a while).
const HfTokenizer* RealTokenizer(const std::string& model) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<HfTokenizer>> loaded;
  std::lock_guard<std::mutex> lock(mu);
  auto it = loaded.find(model);
  if (it != loaded.end()) return it->second.get();
  auto tokenizer = HfTokenizer::Load(SharedDataDir() / "tokenizers" / model / "tokenizer.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  if (!tokenizer.ok()) return nullptr;
  return (loaded[model] = std::move(tokenizer).value()).get();
}

std::string Ids(const std::vector<int32_t>& ids) {
  std::string out;
  for (const int32_t id : ids) out += " " + std::to_string(id);
  return out;
}

// Encodes every case of `vectors` (without special tokens), expects the ids and the decode round
// trip, and prints "<name>: N/46".
void ExpectVectorsReproduce(const std::string& model, const std::string& vectors) {
  const std::filesystem::path inp = SharedDataDir() / "tokenizers" / model / vectors;
  if (!std::filesystem::exists(SharedDataDir())) GTEST_SKIP() << "../shared/data absent";
  const HfTokenizer* tokenizer = RealTokenizer(model);
  ASSERT_NE(tokenizer, nullptr);
  auto cases = ReadVocabVectors(inp);
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_EQ(cases->size(), 46u);
  int matched = 0, round_trips = 0;
  for (size_t i = 0; i < cases->size(); ++i) {
    const VocabCase& c = (*cases)[i];
    auto ids = tokenizer->Encode(c.text, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    if (*ids == c.ids) {
      ++matched;
    } else {
      ADD_FAILURE() << vectors << " case " << i << " '" << c.text << "'\n  expected" << Ids(c.ids)
                    << "\n  got     " << Ids(*ids);
    }
    auto text = tokenizer->Decode(*ids, /*skip_special_tokens=*/false);
    ASSERT_TRUE(text.ok()) << text.status();
    if (*text == c.text) {
      ++round_trips;
    } else {
      ADD_FAILURE() << vectors << " case " << i << " decodes to '" << *text << "', not '" << c.text
                    << "'";
    }
  }
  std::printf("%s (%s): %d/%zu ids, %d/%zu round trips\n", model.c_str(), vectors.c_str(), matched,
              cases->size(), round_trips, cases->size());
  EXPECT_EQ(matched, 46);
  EXPECT_EQ(round_trips, 46);
}

TEST(HfTokenizerTest, Gpt2VectorsReproduce46Of46) {
  ExpectVectorsReproduce("gpt2", "ggml-vocab-gpt-2.gguf.inp");
}

TEST(HfTokenizerTest, Llama2VectorsReproduce46Of46) {
  ExpectVectorsReproduce("llama2", "ggml-vocab-llama-spm.gguf.inp");
}

TEST(HfTokenizerTest, Llama3VectorsReproduce46Of46) {
  ExpectVectorsReproduce("llama3", "ggml-vocab-llama-bpe.gguf.inp");
}

TEST(HfTokenizerTest, Qwen2VectorsReproduce46Of46) {
  ExpectVectorsReproduce("qwen2", "ggml-vocab-qwen2.gguf.inp");
}

TEST(HfTokenizerTest, DeepseekR1QwenVectorsReproduce46Of46) {
  ExpectVectorsReproduce("qwen2", "ggml-vocab-deepseek-r1-qwen.gguf.inp");
}

TEST(HfTokenizerTest, RealVocabulariesReportSizesAndSpecialTokens) {
  if (!std::filesystem::exists(SharedDataDir())) GTEST_SKIP() << "../shared/data absent";
  const struct {
    const char* model;
    int vocab_size;
    const char* special;
    int32_t special_id;
  } expected[] = {{"gpt2", 50257, "<|endoftext|>", 50256},
                  {"llama2", 32000, "</s>", 2},
                  {"llama3", 128256, "<|eot_id|>", 128009},
                  {"qwen2", 151665, "<|im_end|>", 151645}};
  for (const auto& e : expected) {
    const HfTokenizer* tokenizer = RealTokenizer(e.model);
    ASSERT_NE(tokenizer, nullptr);
    EXPECT_EQ(tokenizer->vocab_size(), e.vocab_size) << e.model;
    EXPECT_EQ(tokenizer->TokenToId(e.special), e.special_id) << e.model;
    EXPECT_EQ(tokenizer->IdToToken(e.special_id), e.special) << e.model;
    EXPECT_TRUE(tokenizer->IsSpecial(e.special_id)) << e.model;
    EXPECT_FALSE(tokenizer->IsSpecial(100)) << e.model;
  }
}

TEST(HfTokenizerTest, Llama3AddSpecialTokensPrependsBeginOfText) {
  if (!std::filesystem::exists(SharedDataDir())) GTEST_SKIP() << "../shared/data absent";
  const HfTokenizer* tokenizer = RealTokenizer("llama3");
  ASSERT_NE(tokenizer, nullptr);
  auto plain = tokenizer->Encode("Hello world", false);
  auto with = tokenizer->Encode("Hello world", true);
  ASSERT_TRUE(plain.ok() && with.ok());
  EXPECT_EQ(*plain, (std::vector<int32_t>{9906, 1917}));
  EXPECT_EQ(*with, (std::vector<int32_t>{128000, 9906, 1917}));
  // Special tokens written in the text are matched as such, and skipped on request.
  auto chat = tokenizer->Encode("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", false);
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ(chat->front(), 128006);
  EXPECT_EQ(chat->back(), 128009);
  auto text = tokenizer->Decode(*chat, /*skip_special_tokens=*/true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "user\n\nHi");
  text = tokenizer->Decode(*chat, /*skip_special_tokens=*/false);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(HfTokenizerTest, Llama2PrependsMetaspaceToEachSegmentAndAddsBos) {
  if (!std::filesystem::exists(SharedDataDir())) GTEST_SKIP() << "../shared/data absent";
  const HfTokenizer* tokenizer = RealTokenizer("llama2");
  ASSERT_NE(tokenizer, nullptr);
  auto ids = tokenizer->Encode("Hello", true);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{1, 15043}));  // <s> ▁Hello
  // A byte-fallback token cut mid-character decodes to U+FFFD per byte (ByteFallback decoder).
  auto text = tokenizer->Decode(std::vector<int32_t>{0xE2 + 3, 0x82 + 3}, false);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(HfTokenizerTest, Qwen2MatchesSpecialAndAddedTokensInText) {
  if (!std::filesystem::exists(SharedDataDir())) GTEST_SKIP() << "../shared/data absent";
  const HfTokenizer* tokenizer = RealTokenizer("qwen2");
  ASSERT_NE(tokenizer, nullptr);
  auto ids = tokenizer->Encode("<|im_start|>user\n<tool_call>x</tool_call><|im_end|>", true);
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 5u);
  EXPECT_EQ(ids->front(), 151644);
  EXPECT_EQ(ids->back(), 151645);
  // <tool_call> is added but not special: skip_special_tokens keeps it.
  auto text = tokenizer->Decode(*ids, /*skip_special_tokens=*/true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "user\n<tool_call>x</tool_call>");
}

TEST(HfTokenizerTest, ByteLevelDecodeOfPartialCharacterGivesReplacementCharacter) {
  if (!std::filesystem::exists(SharedDataDir())) GTEST_SKIP() << "../shared/data absent";
  const HfTokenizer* tokenizer = RealTokenizer("gpt2");
  ASSERT_NE(tokenizer, nullptr);
  auto ids = tokenizer->Encode("\xF0\x9F\x9C\x81", false);  // U+1F701: several byte tokens.
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 2u);
  auto text = tokenizer->Decode(std::span<const int32_t>(ids->data(), 1), false);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "\xEF\xBF\xBD");
}

TEST(HfTokenizerTest, EncodingIsThreadSafe) {
  if (!std::filesystem::exists(SharedDataDir())) GTEST_SKIP() << "../shared/data absent";
  const HfTokenizer* tokenizer = RealTokenizer("llama3");
  ASSERT_NE(tokenizer, nullptr);
  auto cases =
      ReadVocabVectors(SharedDataDir() / "tokenizers/llama3/ggml-vocab-llama-bpe.gguf.inp");
  ASSERT_TRUE(cases.ok());
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < 20; ++round) {
        for (const VocabCase& c : *cases) {
          auto ids = tokenizer->Encode(c.text, false);
          if (!ids.ok() || *ids != c.ids) ++mismatches;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// Not a pass/fail check: prints single-thread encode throughput on ~1 MB of text.
TEST(HfTokenizerTest, Llama3EncodeThroughput) {
  if (!std::filesystem::exists(SharedDataDir())) GTEST_SKIP() << "../shared/data absent";
  const HfTokenizer* tokenizer = RealTokenizer("llama3");
  ASSERT_NE(tokenizer, nullptr);
  auto cases =
      ReadVocabVectors(SharedDataDir() / "tokenizers/llama3/ggml-vocab-llama-bpe.gguf.inp");
  ASSERT_TRUE(cases.ok());
  std::string corpus;
  while (corpus.size() < (1u << 20)) {
    for (const VocabCase& c : *cases) corpus += c.text + "\n";
  }
  size_t tokens = 0;
  const auto start = std::chrono::steady_clock::now();
  constexpr int kRounds = 3;
  for (int round = 0; round < kRounds; ++round) {
    auto ids = tokenizer->Encode(corpus, false);
    ASSERT_TRUE(ids.ok());
    tokens = ids->size();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("llama3 encode: %.1f MB/s (%zu bytes -> %zu tokens)\n",
              kRounds * corpus.size() / seconds / 1e6, corpus.size(), tokens);
}

// ---- Small inline tokenizers ----

// A tokenizer.json around `model` with the other components given in `extra`.
std::string TokenizerJson(const Json& model, const Json& extra = Json::object()) {
  Json root = {{"version", "1.0"},
               {"truncation", nullptr},
               {"padding", nullptr},
               {"added_tokens", Json::array()},
               {"normalizer", nullptr},
               {"pre_tokenizer", nullptr},
               {"post_processor", nullptr},
               {"decoder", nullptr},
               {"model", model}};
  for (const auto& [key, value] : extra.items()) root[key] = value;
  return root.dump();
}

Json Bpe(const Json& vocab, const Json& merges, const Json& options = Json::object()) {
  Json model = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"vocab", vocab},
                {"merges", merges}};
  for (const auto& [key, value] : options.items()) model[key] = value;
  return model;
}

std::unique_ptr<HfTokenizer> MustLoad(const std::string& json) {
  auto tokenizer = HfTokenizer::FromJson(json, "inline.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(tokenizer).value() : nullptr;
}

std::vector<int32_t> MustEncode(const HfTokenizer& tokenizer, std::string_view text,
                                bool add_special_tokens = false) {
  auto ids = tokenizer.Encode(text, add_special_tokens);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

void ExpectError(const Status& status, const std::vector<std::string>& parts) {
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status;
  for (const std::string& part : parts) {
    EXPECT_NE(status.message().find(part), std::string::npos)
        << "missing '" << part << "' in: " << status;
  }
}

const Json kAbcVocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};

TEST(HfTokenizerTest, MergesApplyLowestRankFirstInEitherSpelling) {
  auto bc_first = MustLoad(TokenizerJson(Bpe(kAbcVocab, {"b c", "a b"})));
  auto ab_first = MustLoad(TokenizerJson(Bpe(kAbcVocab, Json::array({{"a", "b"}, {"b", "c"}}))));
  ASSERT_TRUE(bc_first && ab_first);
  EXPECT_EQ(MustEncode(*bc_first, "abc"), (std::vector<int32_t>{0, 4}));
  EXPECT_EQ(MustEncode(*ab_first, "abc"), (std::vector<int32_t>{3, 2}));
  auto full = MustLoad(TokenizerJson(Bpe(kAbcVocab, {"b c", "a bc"})));
  ASSERT_TRUE(full);
  EXPECT_EQ(MustEncode(*full, "abcab"), (std::vector<int32_t>{5, 0, 1}));
}

TEST(HfTokenizerTest, IgnoreMergesTakesWholeWordFromVocabulary) {
  // "abc" is in the vocabulary but no merge path reaches it.
  auto with = MustLoad(TokenizerJson(Bpe(kAbcVocab, {"a b"}, {{"ignore_merges", true}})));
  auto without = MustLoad(TokenizerJson(Bpe(kAbcVocab, {"a b"}, {{"ignore_merges", false}})));
  ASSERT_TRUE(with && without);
  EXPECT_EQ(MustEncode(*with, "abc"), (std::vector<int32_t>{5}));
  EXPECT_EQ(MustEncode(*without, "abc"), (std::vector<int32_t>{3, 2}));
}

TEST(HfTokenizerTest, ByteFallbackEncodesUnknownCharactersAsByteTokens) {
  const Json vocab = {{"<unk>", 0}, {"<0xC3>", 1}, {"<0xA9>", 2},
                      {"a", 3},     {"<0xE2>", 4}, {"<0x82>", 5}};
  const Json decoder = {{"type", "Sequence"},
                        {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  auto tokenizer = MustLoad(
      TokenizerJson(Bpe(vocab, Json::array(), {{"unk_token", "<unk>"}, {"byte_fallback", true}}),
                    {{"decoder", decoder}}));
  ASSERT_TRUE(tokenizer);
  EXPECT_EQ(MustEncode(*tokenizer, "a\xC3\xA9"), (std::vector<int32_t>{3, 1, 2}));
  // € (E2 82 AC) lacks <0xAC>: the whole character is unknown.
  EXPECT_EQ(MustEncode(*tokenizer, "a\xE2\x82\xAC"), (std::vector<int32_t>{3, 0}));
  auto text = tokenizer->Decode(std::vector<int32_t>{3, 1, 2}, false);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "a\xC3\xA9");
  // An invalid run of byte tokens gives one U+FFFD per byte, not per invalid sequence.
  text = tokenizer->Decode(std::vector<int32_t>{4, 5, 3}, false);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text,
            "\xEF\xBF\xBD\xEF\xBF\xBD"
            "a");
}

TEST(HfTokenizerTest, UnknownCharactersFuseOnlyWithFuseUnk) {
  const Json vocab = {{"<unk>", 0}, {"a", 1}};
  auto fused = MustLoad(
      TokenizerJson(Bpe(vocab, Json::array(), {{"unk_token", "<unk>"}, {"fuse_unk", true}})));
  auto separate = MustLoad(TokenizerJson(Bpe(vocab, Json::array(), {{"unk_token", "<unk>"}})));
  auto dropped = MustLoad(TokenizerJson(Bpe(vocab, Json::array())));
  ASSERT_TRUE(fused && separate && dropped);
  EXPECT_EQ(MustEncode(*fused, "xya"), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(MustEncode(*separate, "xya"), (std::vector<int32_t>{0, 0, 1}));
  EXPECT_EQ(MustEncode(*dropped, "xya"), (std::vector<int32_t>{1}));
}

TEST(HfTokenizerTest, ContinuingSubwordPrefixAndEndOfWordSuffixAreApplied) {
  const Json vocab = {{"a", 0}, {"##b", 1}, {"##c</w>", 2}, {"a##b", 3}, {"ab", 4}};
  auto tokenizer = MustLoad(TokenizerJson(Bpe(
      vocab, {"a ##b"}, {{"continuing_subword_prefix", "##"}, {"end_of_word_suffix", "</w>"}})));
  ASSERT_TRUE(tokenizer);
  // a, ##b, ##c</w>; the merge "a ##b" makes "ab" (the prefix is dropped from the right part).
  EXPECT_EQ(MustEncode(*tokenizer, "abc"), (std::vector<int32_t>{4, 2}));
}

TEST(HfTokenizerTest, AddedTokenStripsWhitespaceOnRequest) {
  const Json vocab = {{"a", 0}, {" ", 1}, {"<m>", 2}, {"b", 3}};
  auto token = [](bool strip) {
    return Json::array({{{"id", 2},
                         {"content", "<m>"},
                         {"single_word", false},
                         {"lstrip", strip},
                         {"rstrip", strip},
                         {"normalized", false},
                         {"special", true}}});
  };
  auto stripping =
      MustLoad(TokenizerJson(Bpe(vocab, Json::array()), {{"added_tokens", token(true)}}));
  auto keeping =
      MustLoad(TokenizerJson(Bpe(vocab, Json::array()), {{"added_tokens", token(false)}}));
  ASSERT_TRUE(stripping && keeping);
  EXPECT_EQ(MustEncode(*stripping, "a  <m>  b"), (std::vector<int32_t>{0, 2, 3}));
  EXPECT_EQ(MustEncode(*keeping, "a  <m>  b"), (std::vector<int32_t>{0, 1, 1, 2, 1, 1, 3}));
}

TEST(HfTokenizerTest, SingleWordAddedTokenMatchesOnlyWholeWords) {
  const Json vocab = {{"c", 0}, {"a", 1}, {"t", 2}, {"s", 3}, {" ", 4}, {"cat", 5}};
  const Json added = {{{"id", 5},
                       {"content", "cat"},
                       {"single_word", true},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", false}}};
  auto tokenizer = MustLoad(TokenizerJson(Bpe(vocab, Json::array()), {{"added_tokens", added}}));
  ASSERT_TRUE(tokenizer);
  EXPECT_EQ(MustEncode(*tokenizer, "a cat"), (std::vector<int32_t>{1, 4, 5}));
  EXPECT_EQ(MustEncode(*tokenizer, "cats"), (std::vector<int32_t>{0, 1, 2, 3}));
}

TEST(HfTokenizerTest, LongestAddedTokenWinsAndNormalizedTokensMatchNormalizedText) {
  const Json vocab = {{"<", 0},    {">", 1},  {"a", 2}, {"<a>", 3},
                      {"<a>>", 4}, {"hi", 5}, {"h", 6}, {"i", 7}};
  const Json added = {{{"id", 3}, {"content", "<a>"}, {"normalized", false}, {"special", true}},
                      {{"id", 4}, {"content", "<a>>"}, {"normalized", false}, {"special", true}},
                      {{"id", 5}, {"content", "hi"}, {"normalized", true}, {"special", false}}};
  auto tokenizer =
      MustLoad(TokenizerJson(Bpe(vocab, Json::array()),
                             {{"added_tokens", added}, {"normalizer", {{"type", "Lowercase"}}}}));
  ASSERT_TRUE(tokenizer);
  EXPECT_EQ(MustEncode(*tokenizer, "<a>><a>"), (std::vector<int32_t>{4, 3}));
  EXPECT_EQ(MustEncode(*tokenizer, "HI<A>"), (std::vector<int32_t>{5, 0, 2, 1}));
  EXPECT_FALSE(tokenizer->IsSpecial(5));
  EXPECT_TRUE(tokenizer->IsSpecial(4));
}

TEST(HfTokenizerTest, TemplateProcessingAddsSpecialTokensOnlyWhenAsked) {
  const Json vocab = {{"<s>", 0}, {"</s>", 1}, {"a", 2}};
  const Json post = {{"type", "TemplateProcessing"},
                     {"single",
                      {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                       {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                       {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
                     {"pair", Json::array()},
                     {"special_tokens",
                      {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
                       {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}};
  auto tokenizer = MustLoad(TokenizerJson(Bpe(vocab, Json::array()), {{"post_processor", post}}));
  ASSERT_TRUE(tokenizer);
  EXPECT_EQ(MustEncode(*tokenizer, "aa", true), (std::vector<int32_t>{0, 2, 2, 1}));
  EXPECT_EQ(MustEncode(*tokenizer, "aa", false), (std::vector<int32_t>{2, 2}));
}

TEST(HfTokenizerTest, InvalidUtf8IsRejectedWithItsOffset) {
  auto tokenizer = MustLoad(TokenizerJson(Bpe(kAbcVocab, Json::array())));
  ASSERT_TRUE(tokenizer);
  auto ids = tokenizer->Encode("ab\xC3(", false);
  ExpectError(ids.status(), {"UTF-8", "offset 2"});
}

TEST(HfTokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  auto tokenizer = MustLoad(TokenizerJson(Bpe(kAbcVocab, Json::array())));
  ASSERT_TRUE(tokenizer);
  ExpectError(tokenizer->Decode(std::vector<int32_t>{0, 6}, false).status(), {"6"});
  ExpectError(tokenizer->Decode(std::vector<int32_t>{-1}, false).status(), {"-1"});
  // Without a decoder, tokens are joined by spaces.
  auto text = tokenizer->Decode(std::vector<int32_t>{0, 4}, false);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "a bc");
}

TEST(HfTokenizerTest, UnsupportedComponentsAreNamed) {
  const Json model = Bpe(kAbcVocab, Json::array());
  ExpectError(
      HfTokenizer::FromJson(TokenizerJson({{"type", "WordPiece"}, {"vocab", kAbcVocab}}), "t.json")
          .status(),
      {"t.json: unsupported model type 'WordPiece'"});
  ExpectError(HfTokenizer::FromJson(
                  TokenizerJson(model, {{"normalizer", {{"type", "BertNormalizer"}}}}), "t.json")
                  .status(),
              {"t.json: unsupported normalizer 'BertNormalizer'"});
  ExpectError(HfTokenizer::FromJson(
                  TokenizerJson(
                      model, {{"normalizer",
                               {{"type", "Sequence"},
                                {"normalizers", {{{"type", "NFC"}}, {{"type", "Precompiled"}}}}}}}),
                  "t.json")
                  .status(),
              {"t.json: unsupported normalizer 'Precompiled'", "normalizer.normalizers[1]"});
  ExpectError(HfTokenizer::FromJson(
                  TokenizerJson(model, {{"pre_tokenizer", {{"type", "UnicodeScripts"}}}}), "t.json")
                  .status(),
              {"t.json: unsupported pre_tokenizer 'UnicodeScripts'"});
  ExpectError(
      HfTokenizer::FromJson(TokenizerJson(model, {{"decoder", {{"type", "CTC"}}}}), "t.json")
          .status(),
      {"t.json: unsupported decoder 'CTC'"});
  ExpectError(HfTokenizer::FromJson(
                  TokenizerJson(model, {{"post_processor", {{"type", "Frobnicate"}}}}), "t.json")
                  .status(),
              {"t.json: unsupported post_processor 'Frobnicate'"});
}

TEST(HfTokenizerTest, MalformedFilesAreInvalidArgumentNamingFileAndField) {
  ExpectError(HfTokenizer::FromJson("{\"model\": ", "t.json").status(), {"t.json", "JSON"});
  ExpectError(HfTokenizer::FromJson("[1, 2]", "t.json").status(), {"t.json"});
  ExpectError(HfTokenizer::FromJson("{}", "t.json").status(), {"t.json", "'model'"});
  ExpectError(
      HfTokenizer::FromJson(TokenizerJson({{"type", "BPE"}, {"merges", Json::array()}}), "t.json")
          .status(),
      {"t.json", "'model.vocab'"});
  ExpectError(HfTokenizer::FromJson(TokenizerJson(Bpe(kAbcVocab, {"a x"})), "t.json").status(),
              {"t.json", "'model.merges[0]'", "'x'"});
  ExpectError(HfTokenizer::FromJson(TokenizerJson(Bpe(kAbcVocab, {42})), "t.json").status(),
              {"t.json", "'model.merges[0]'"});
  ExpectError(HfTokenizer::FromJson(
                  TokenizerJson(Bpe(kAbcVocab, Json::array(), {{"dropout", 0.1}})), "t.json")
                  .status(),
              {"t.json", "'model.dropout'"});
  ExpectError(HfTokenizer::FromJson(
                  TokenizerJson(Bpe(kAbcVocab, Json::array()),
                                {{"pre_tokenizer", {{"type", "Split"}, {"behavior", "Isolated"}}}}),
                  "t.json")
                  .status(),
              {"t.json", "'pre_tokenizer.pattern'"});
  ExpectError(HfTokenizer::FromJson(TokenizerJson(Bpe(kAbcVocab, Json::array()),
                                                  {{"added_tokens", {{{"content", "x"}}}}}),
                                    "t.json")
                  .status(),
              {"t.json", "'added_tokens[0].id'"});
  ExpectError(HfTokenizer::FromJson(TokenizerJson(Bpe(kAbcVocab, Json::array()),
                                                  {{"pre_tokenizer",
                                                    {{"type", "Split"},
                                                     {"pattern", {{"Regex", "(unclosed"}}},
                                                     {"behavior", "Isolated"}}}}),
                                    "t.json")
                  .status(),
              {"t.json", "pre_tokenizer.pattern"});
}

// ---- Components on their own ----

std::vector<std::string> PreTokenize(const Json& spec, std::string_view text,
                                     bool at_origin = true) {
  auto pre_tokenizer = ParsePreTokenizer(spec, "t.json", "pre_tokenizer");
  EXPECT_TRUE(pre_tokenizer.ok()) << pre_tokenizer.status();
  if (!pre_tokenizer.ok()) return {};
  PreTokenizedText io{std::string(text), {{0, text.size(), at_origin}}}, scratch;
  (*pre_tokenizer)->PreTokenize(io, scratch);
  std::vector<std::string> words;
  for (const WordSpan& w : io.words) words.push_back(io.text.substr(w.begin, w.end - w.begin));
  return words;
}

using Words = std::vector<std::string>;

TEST(PreTokenizerTest, SplitBehavioursMatchTokenizers) {
  auto split = [](const char* behavior, bool invert = false) {
    return PreTokenize({{"type", "Split"},
                        {"pattern", {{"String", "-"}}},
                        {"behavior", behavior},
                        {"invert", invert}},
                       "the-final--countdown");
  };
  EXPECT_EQ(split("Removed"), (Words{"the", "final", "countdown"}));
  EXPECT_EQ(split("Isolated"), (Words{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithPrevious"), (Words{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithNext"), (Words{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split("Contiguous"), (Words{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(split("Removed", /*invert=*/true), (Words{"-", "-", "-"}));
}

TEST(PreTokenizerTest, ByteLevelSplitsWithGpt2RegexAndMapsBytes) {
  const std::string text = "Hello my friend, how is your day going?";
  EXPECT_EQ(PreTokenize({{"type", "ByteLevel"}, {"add_prefix_space", false}}, text),
            (Words{"Hello", "Ġmy", "Ġfriend", ",", "Ġhow", "Ġis", "Ġyour", "Ġday", "Ġgoing", "?"}));
  EXPECT_EQ(PreTokenize({{"type", "ByteLevel"}, {"add_prefix_space", true}}, "Hi  there\n"),
            (Words{"ĠHi", "Ġ", "Ġthere", "Ċ"}));
  EXPECT_EQ(PreTokenize({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}},
                        "a b\xC3\xA9"),
            (Words{"aĠbÃ©"}));
}

TEST(PreTokenizerTest, MetaspaceReplacesSpacesAndPrependsPerScheme) {
  const Json always = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}};
  EXPECT_EQ(PreTokenize(always, "Hey   friend!"), (Words{"▁Hey", "▁", "▁", "▁friend!"}));
  const Json first = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}};
  EXPECT_EQ(PreTokenize(first, "Hey you", /*at_origin=*/true), (Words{"▁Hey", "▁you"}));
  EXPECT_EQ(PreTokenize(first, "Hey you", /*at_origin=*/false), (Words{"Hey", "▁you"}));
  const Json no_split = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "never"}, {"split", false}};
  EXPECT_EQ(PreTokenize(no_split, "Hey you"), (Words{"Hey▁you"}));
}

TEST(PreTokenizerTest, DigitsWhitespaceAndSequence) {
  EXPECT_EQ(PreTokenize({{"type", "Digits"}, {"individual_digits", true}}, "abc123"),
            (Words{"abc", "1", "2", "3"}));
  EXPECT_EQ(PreTokenize({{"type", "Digits"}, {"individual_digits", false}}, "abc123d4"),
            (Words{"abc", "123", "d", "4"}));
  EXPECT_EQ(PreTokenize({{"type", "Whitespace"}}, "Hey friend!  ok?"),
            (Words{"Hey", "friend", "!", "ok", "?"}));
  EXPECT_EQ(PreTokenize({{"type", "WhitespaceSplit"}}, " Hey friend!\t"),
            (Words{"Hey", "friend!"}));
  EXPECT_EQ(
      PreTokenize(
          {{"type", "Sequence"},
           {"pretokenizers",
            {{{"type", "WhitespaceSplit"}}, {{"type", "Digits"}, {"individual_digits", true}}}}},
          "ab12 c3"),
      (Words{"ab", "1", "2", "c", "3"}));
}

std::string Normalize(const Json& spec, std::string_view text) {
  auto normalizer = ParseNormalizer(spec, "t.json", "normalizer");
  EXPECT_TRUE(normalizer.ok()) << normalizer.status();
  if (!normalizer.ok()) return "";
  std::string out;
  (*normalizer)->Normalize(text, out);
  return out;
}

TEST(NormalizerTest, UnicodeFormsLowercaseStripPrependAndReplace) {
  EXPECT_EQ(Normalize({{"type", "NFC"}}, "e\xCC\x81"), "\xC3\xA9");
  EXPECT_EQ(Normalize({{"type", "NFD"}}, "\xC3\xA9"), "e\xCC\x81");
  EXPECT_EQ(Normalize({{"type", "NFKC"}}, "\xEF\xAC\x81"), "fi");  // ﬁ ligature
  EXPECT_EQ(Normalize({{"type", "NFKD"}}, "\xE2\x91\xA0"), "1");   // ①
  EXPECT_EQ(Normalize({{"type", "Lowercase"}}, "HeLLo \xC3\x89"), "hello \xC3\xA9");
  EXPECT_EQ(
      Normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", false}}, " \t a b \n"),
      "a b \n");
  EXPECT_EQ(
      Normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}, " \t a b \n"),
      "a b");
  EXPECT_EQ(Normalize({{"type", "Prepend"}, {"prepend", "▁"}}, "x"), "▁x");
  EXPECT_EQ(Normalize({{"type", "Prepend"}, {"prepend", "▁"}}, ""), "");
  EXPECT_EQ(
      Normalize({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}, "a b  c"),
      "a▁b▁▁c");
  EXPECT_EQ(Normalize({{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}},
                      "a b    c"),
            "a b c");
  EXPECT_EQ(Normalize({{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "NFD"}}, {{"type", "StripAccents"}}, {{"type", "Lowercase"}}}}},
                      "\xC3\x89t\xC3\xA9"),
            "ete");
}

// The normalizers skip utf8proc on stretches it would leave alone; on random mixes of scripts,
// combining marks, jamo and precomposed letters they must agree with utf8proc on the whole text.
TEST(NormalizerTest, UnicodeFormsAgreeWithUtf8procOnMixedText) {
  const unsigned seed = 20261126;
  std::mt19937 rng(seed);
  const std::vector<std::pair<char32_t, char32_t>> ranges = {
      {0x20, 0x7E},     {0xC0, 0x17F},      {0x300, 0x36F},    {0x370, 0x3FF},   {0x400, 0x4FF},
      {0x1100, 0x1112}, {0x1161, 0x1175},   {0x11A8, 0x11C2},  {0xAC00, 0xAC40}, {0x3040, 0x30FF},
      {0x4E00, 0x4E40}, {0xF900, 0xF920},   {0x1E00, 0x1EFF},  {0x2000, 0x2070}, {0xFB00, 0xFB06},
      {0x0B3E, 0x0B57}, {0x1F600, 0x1F610}, {0x1D15E, 0x1D164}};
  const std::vector<std::pair<const char*, int>> forms = {
      {"NFC", UTF8PROC_STABLE | UTF8PROC_COMPOSE},
      {"NFD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE},
      {"NFKC", UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT},
      {"NFKD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT}};
  for (const auto& [form, options] : forms) {
    auto normalizer = ParseNormalizer(Json{{"type", form}}, "t.json", "normalizer");
    ASSERT_TRUE(normalizer.ok());
    for (int round = 0; round < 2000; ++round) {
      std::string text;
      const int length = 1 + static_cast<int>(rng() % 12);
      for (int i = 0; i < length; ++i) {
        const auto& [lo, hi] = ranges[rng() % ranges.size()];
        const char32_t c = lo + rng() % (hi - lo + 1);
        if (utf8proc_codepoint_valid(static_cast<utf8proc_int32_t>(c))) AppendUtf8(c, text);
      }
      utf8proc_uint8_t* mapped = nullptr;
      const utf8proc_ssize_t n =
          utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                       static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                       static_cast<utf8proc_option_t>(options));
      ASSERT_GE(n, 0);
      const std::string expected(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
      std::free(mapped);
      std::string got;
      (*normalizer)->Normalize(text, got);
      ASSERT_EQ(got, expected) << form << " of '" << text << "' (seed " << seed << ", round "
                               << round << ")";
    }
  }
}

std::string DecodeChain(const Json& spec, std::vector<std::string> tokens) {
  auto decoder = ParseDecoder(spec, "t.json", "decoder");
  EXPECT_TRUE(decoder.ok()) << decoder.status();
  if (!decoder.ok()) return "";
  (*decoder)->DecodeChain(tokens);
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

TEST(DecoderTest, StripMetaspaceReplaceAndByteLevel) {
  EXPECT_EQ(DecodeChain({{"type", "Strip"}, {"content", "H"}, {"start", 1}, {"stop", 0}},
                        {"Hey", " friend!", "HHH"}),
            "ey friend!HH");
  EXPECT_EQ(DecodeChain({{"type", "Strip"}, {"content", "y"}, {"start", 0}, {"stop", 1}},
                        {"Hey", " friend!"}),
            "He friend!");
  EXPECT_EQ(DecodeChain({{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}},
                        {"▁Hey", "▁friend!"}),
            "Hey friend!");
  EXPECT_EQ(DecodeChain({{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "never"}},
                        {"▁Hey", "▁friend!"}),
            " Hey friend!");
  EXPECT_EQ(DecodeChain({{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                        {"▁a▁b"}),
            " a b");
  EXPECT_EQ(DecodeChain({{"type", "ByteLevel"}}, {"Hello", "Ġmy", "<|endoftext|>", "ĠÃ©"}),
            "Hello my<|endoftext|> \xC3\xA9");
  EXPECT_EQ(DecodeChain({{"type", "BPEDecoder"}, {"suffix", "</w>"}}, {"hel", "lo</w>", "you</w>"}),
            "hello you");
}

}  // namespace
}  // namespace tandem::tokenizer
