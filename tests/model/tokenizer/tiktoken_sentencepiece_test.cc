// Tiktoken rank files, SentencePiece models and LoadTokenizer, against llama.cpp's vectors and
// the shared data in ../shared/data/tokenizers; plus properties every tokenizer of every format
// must have (roundtrip, UTF-8 validation), in one suite instantiated per tokenizer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "model/tokenizer/sentencepiece_tokenizer.h"
#include "model/tokenizer/tiktoken_tokenizer.h"
#include "model/tokenizer/tokenizer.h"
#include "vocab_vectors.h"

namespace tandem::tokenizer {
namespace {

namespace fs = std::filesystem;
using testing::ReadVocabVectors;
using testing::SharedDataDir;
using testing::VocabCase;

fs::path TokenizersDir() { return SharedDataDir() / "tokenizers"; }

#define SKIP_WITHOUT(path)                                                             \
  do {                                                                                 \
    if (!fs::exists(path)) GTEST_SKIP() << (path).string() << " absent (shared data)"; \
  } while (0)

// A temporary directory removed on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() / ("tandem_tokenizer_test_" + std::to_string(::getpid()) +
                                         "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path Write(const std::string& name, const std::string& bytes) const {
    std::ofstream out(path_ / name, std::ios::binary);
    out << bytes;
    return path_ / name;
  }

 private:
  fs::path path_;
};

// Loads each file once per test binary (the tokenizer.json files take a while to parse).
const Tokenizer* Cached(const fs::path& path) {
  static std::mutex mu;
  static auto* cache = new std::map<fs::path, std::unique_ptr<Tokenizer>>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(path);
  if (it == cache->end()) {
    auto loaded = LoadTokenizer(path);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    it = cache->emplace(path, loaded.ok() ? std::move(loaded).value() : nullptr).first;
  }
  return it->second.get();
}

std::string Ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += " " + std::to_string(id);
  return s;
}

// Checks `tok` against every vector of `inp` and prints how many match.
void ExpectAllVectorsMatch(const Tokenizer& tok, const fs::path& inp, const char* label) {
  auto cases = ReadVocabVectors(inp);
  ASSERT_TRUE(cases.ok()) << cases.status();
  int matched = 0;
  for (size_t i = 0; i < cases->size(); ++i) {
    const VocabCase& c = (*cases)[i];
    auto ids = tok.Encode(c.text, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    if (*ids == c.ids) {
      ++matched;
    } else {
      ADD_FAILURE() << label << " case " << i << " '" << c.text << "'\n  got: " << Ids(*ids)
                    << "\n want: " << Ids(c.ids);
    }
  }
  std::printf("[ vectors  ] %s: %d/%zu\n", label, matched, cases->size());
  EXPECT_EQ(matched, static_cast<int>(cases->size()));
}

// ---------------------------------------------------------------------------------------------
// Tiktoken

TEST(TiktokenTest, Llama3RanksReproduceAllLlamaBpeVectors) {
  const fs::path dir = TokenizersDir() / "llama3";
  SKIP_WITHOUT(dir / "tokenizer.model");
  auto tok = TiktokenTokenizer::Load(dir / "tokenizer.model");
  ASSERT_TRUE(tok.ok()) << tok.status();
  ExpectAllVectorsMatch(**tok, dir / "ggml-vocab-llama-bpe.gguf.inp", "tiktoken llama3");
}

TEST(TiktokenTest, Llama3SpecialTokensAreNamedAsMetasTokenizerPy) {
  const fs::path path = TokenizersDir() / "llama3" / "tokenizer.model";
  SKIP_WITHOUT(path);
  auto tok = TiktokenTokenizer::Load(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 128256);
  EXPECT_EQ((*tok)->num_ranks(), 128000);
  const std::map<int32_t, std::string> expected = {{128000, "<|begin_of_text|>"},
                                                   {128001, "<|end_of_text|>"},
                                                   {128002, "<|reserved_special_token_0|>"},
                                                   {128003, "<|reserved_special_token_1|>"},
                                                   {128004, "<|finetune_right_pad_id|>"},
                                                   {128005, "<|step_id|>"},
                                                   {128006, "<|start_header_id|>"},
                                                   {128007, "<|end_header_id|>"},
                                                   {128008, "<|eom_id|>"},
                                                   {128009, "<|eot_id|>"},
                                                   {128010, "<|python_tag|>"},
                                                   {128011, "<|image|>"},
                                                   {128012, "<|reserved_special_token_2|>"},
                                                   {128255, "<|reserved_special_token_245|>"}};
  for (const auto& [id, name] : expected) {
    EXPECT_EQ((*tok)->IdToToken(id), name) << id;
    EXPECT_EQ((*tok)->TokenToId(name), id) << name;
    EXPECT_TRUE((*tok)->IsSpecial(id)) << id;
  }
  EXPECT_FALSE((*tok)->IsSpecial(100));
  EXPECT_EQ((*tok)->IdToToken(128256), std::nullopt);
}

TEST(TiktokenTest, SpecialTokensWrittenInTextAreMatchedAndBosIsPrepended) {
  const fs::path path = TokenizersDir() / "llama3" / "tokenizer.model";
  SKIP_WITHOUT(path);
  auto tok = TiktokenTokenizer::Load(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string text = "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>";
  auto ids = (*tok)->Encode(text, /*add_special_tokens=*/true);
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_GE(ids->size(), 6u);
  EXPECT_EQ(ids->front(), 128000);
  EXPECT_EQ((*ids)[1], 128006);
  EXPECT_EQ(ids->back(), 128009);
  EXPECT_EQ(*(*tok)->Decode(*ids, /*skip_special_tokens=*/false), "<|begin_of_text|>" + text);
  EXPECT_EQ(*(*tok)->Decode(*ids, /*skip_special_tokens=*/true), "user\n\nHi!");
  auto plain = (*tok)->Encode("Hi", /*add_special_tokens=*/false);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->size(), 1u);
}

TEST(TiktokenTest, TokensAreSpelledInTheByteLevelAlphabetOfTokenizerJson) {
  const fs::path dir = TokenizersDir() / "llama3";
  SKIP_WITHOUT(dir / "tokenizer.model");
  auto tok = TiktokenTokenizer::Load(dir / "tokenizer.model");
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto the = (*tok)->Encode(" the", false);
  ASSERT_TRUE(the.ok());
  ASSERT_EQ(the->size(), 1u);
  EXPECT_EQ((*tok)->IdToToken(the->front()), "\xC4\xA0the");  // "Ġthe"
  EXPECT_EQ((*tok)->TokenToId("\xC4\xA0the"), the->front());
  EXPECT_EQ((*tok)->TokenToId("no such token, surely"), std::nullopt);

  if (!fs::exists(dir / "tokenizer.json")) return;
  const Tokenizer* json = Cached(dir / "tokenizer.json");
  ASSERT_NE(json, nullptr);
  ASSERT_EQ(json->vocab_size(), (*tok)->vocab_size());
  int differ = 0;
  for (int32_t id = 0; id < (*tok)->vocab_size(); ++id) {
    if ((*tok)->IdToToken(id) != json->IdToToken(id) && ++differ <= 5) {
      ADD_FAILURE() << "id " << id << ": tiktoken '" << (*tok)->IdToToken(id).value_or("-")
                    << "' tokenizer.json '" << json->IdToToken(id).value_or("-") << "'";
    }
  }
  EXPECT_EQ(differ, 0);
}

TEST(TiktokenTest, AgreesWithTokenizerJsonOnLongAndMixedText) {
  const fs::path dir = TokenizersDir() / "llama3";
  SKIP_WITHOUT(dir / "tokenizer.model");
  SKIP_WITHOUT(dir / "tokenizer.json");
  auto tok = TiktokenTokenizer::Load(dir / "tokenizer.model");
  ASSERT_TRUE(tok.ok()) << tok.status();
  const Tokenizer* json = Cached(dir / "tokenizer.json");
  ASSERT_NE(json, nullptr);
  // Pieces over 128 bytes take the heap-driven merge; they must split exactly as short ones.
  std::vector<std::string> texts = {
      std::string(3000, 'a'), std::string(500, ' ') + "x",
      "Supercalifragilistic" + std::string(200, 'z') + "expialidocious",
      "\xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE" + std::string(300, '!') + "<|eot_id|>",
      std::string(400, '\n') + "\t\t 12345678901234567890"};
  std::string mixed;
  for (int i = 0; i < 40; ++i)
    mixed +=
        "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8"
        "apple" +
        std::to_string(i * 7919);
  texts.push_back(mixed);
  for (const auto& text : texts) {
    auto a = (*tok)->Encode(text, true);
    auto b = json->Encode(text, true);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b) << "text of " << text.size() << " bytes starting '" << text.substr(0, 20)
                      << "'";
  }
}

TEST(TiktokenTest, RankFileOfAnotherSizeTakesAddedTokensFromTokenizerConfig) {
  // 256 single bytes, then "ab" and "abc".
  std::string ranks;
  auto base64 = [](const std::string& bytes) {
    static const char* kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < bytes.size(); i += 3) {
      const uint32_t v = static_cast<uint8_t>(bytes[i]) << 16 |
                         static_cast<uint8_t>(bytes[i + 1]) << 8 |
                         static_cast<uint8_t>(bytes[i + 2]);
      for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
    }
    if (i + 1 == bytes.size()) {
      const uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
      out += std::string{kAlphabet[(v >> 18) & 63], kAlphabet[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == bytes.size()) {
      const uint32_t v = static_cast<uint8_t>(bytes[i]) << 16 | static_cast<uint8_t>(bytes[i + 1])
                                                                    << 8;
      out += std::string{kAlphabet[(v >> 18) & 63], kAlphabet[(v >> 12) & 63],
                         kAlphabet[(v >> 6) & 63], '='};
    }
    return out;
  };
  for (int b = 0; b < 256; ++b)
    ranks += base64(std::string(1, static_cast<char>(b))) + " " + std::to_string(b) + "\n";
  ranks += base64("ab") + " 256\n" + base64("abc") + " 257\n";

  TempDir plain;
  auto without = TiktokenTokenizer::Load(plain.Write("tokenizer.model", ranks));
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_EQ((*without)->vocab_size(), 258);
  EXPECT_EQ(*(*without)->Encode("abcab", true), (std::vector<int32_t>{257, 256}));
  EXPECT_EQ(*(*without)->Encode("<|end|>", true),
            *(*without)->Encode("<|end|>", false));  // no specials, no BOS

  TempDir configured;
  configured.Write("tokenizer_config.json", R"({
    "bos_token": "<|start|>",
    "eos_token": {"content": "<|end|>"},
    "added_tokens_decoder": {
      "300": {"content": "<|start|>", "special": true},
      "301": {"content": "<|end|>", "special": true},
      "302": {"content": "<tool>", "special": false}
    }})");
  auto with = TiktokenTokenizer::Load(configured.Write("tokenizer.model", ranks));
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ((*with)->vocab_size(), 303);
  EXPECT_EQ(*(*with)->Encode("abc<|end|><tool>", true), (std::vector<int32_t>{300, 257, 301, 302}));
  EXPECT_TRUE((*with)->IsSpecial(301));
  EXPECT_FALSE((*with)->IsSpecial(302));
  EXPECT_EQ(*(*with)->Decode(std::vector<int32_t>{300, 257, 301, 302}, true), "abc<tool>");
  EXPECT_FALSE((*with)->Decode(std::vector<int32_t>{299}, false).ok());  // a gap
}

TEST(TiktokenTest, MalformedRankFileIsInvalidArgumentNamingFileAndLine) {
  TempDir dir;
  auto tok = TiktokenTokenizer::Load(dir.Write("bad.tiktoken", "IQ== 0\nnot*base64 1\n"));
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(tok.status().message().find("bad.tiktoken"), std::string::npos) << tok.status();
  EXPECT_NE(tok.status().message().find("line 2"), std::string::npos) << tok.status();

  auto missing_bytes = TiktokenTokenizer::Load(dir.Write("few.tiktoken", "IQ== 0\nIg== 1\n"));
  ASSERT_FALSE(missing_bytes.ok());
  EXPECT_NE(missing_bytes.status().message().find("single byte"), std::string::npos)
      << missing_bytes.status();
}

// ---------------------------------------------------------------------------------------------
// SentencePiece

TEST(SentencePieceTest, Llama2ModelReproducesAllLlamaSpmVectors) {
  const fs::path dir = TokenizersDir() / "llama2";
  SKIP_WITHOUT(dir / "tokenizer.model");
  auto tok = SentencePieceTokenizer::Load(dir / "tokenizer.model");
  ASSERT_TRUE(tok.ok()) << tok.status();
  ExpectAllVectorsMatch(**tok, dir / "ggml-vocab-llama-spm.gguf.inp", "sentencepiece llama2");
}

TEST(SentencePieceTest, Llama2AddsBosOnlyAndMatchesControlTokensInText) {
  const fs::path path = TokenizersDir() / "llama2" / "tokenizer.model";
  SKIP_WITHOUT(path);
  auto tok = SentencePieceTokenizer::Load(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 32000);
  EXPECT_EQ(*(*tok)->Encode("Hello world", true), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(*(*tok)->Encode("", true), (std::vector<int32_t>{1}));
  EXPECT_EQ(*(*tok)->Encode("", false), (std::vector<int32_t>{}));
  // Each text segment between special tokens gets its own dummy-prefix "▁", as tokenizer.json's
  // Prepend normalizer gives it.
  EXPECT_EQ(*(*tok)->Encode("Hello</s>world", false), (std::vector<int32_t>{15043, 2, 3186}));
  EXPECT_TRUE((*tok)->IsSpecial(1));
  EXPECT_TRUE((*tok)->IsSpecial(2));
  EXPECT_FALSE((*tok)->IsSpecial(15043));
  EXPECT_EQ((*tok)->IdToToken(15043), "\xE2\x96\x81Hello");  // "▁Hello"
  EXPECT_EQ((*tok)->TokenToId("\xE2\x96\x81Hello"), 15043);
  EXPECT_EQ((*tok)->TokenToId("not a piece"), std::nullopt);
  // As Hugging Face decodes: special tokens as text, one leading space dropped.
  EXPECT_EQ(*(*tok)->Decode(std::vector<int32_t>{1, 15043, 3186}, false), "<s> Hello world");
  EXPECT_EQ(*(*tok)->Decode(std::vector<int32_t>{1, 15043, 3186}, true), "Hello world");
  EXPECT_FALSE((*tok)->Decode(std::vector<int32_t>{32000}, false).ok());
}

TEST(SentencePieceTest, BytePiecesDecodeToBytesAndInvalidOnesToReplacement) {
  const fs::path path = TokenizersDir() / "llama2" / "tokenizer.model";
  SKIP_WITHOUT(path);
  auto tok = SentencePieceTokenizer::Load(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const int32_t e4 = *(*tok)->TokenToId("<0xE4>"), b8 = *(*tok)->TokenToId("<0xB8>"),
                ad = *(*tok)->TokenToId("<0xAD>"), ff = *(*tok)->TokenToId("<0xFF>");
  EXPECT_EQ(*(*tok)->Decode(std::vector<int32_t>{e4, b8, ad}, false), "\xE4\xB8\xAD");  // 中
  EXPECT_EQ(*(*tok)->Decode(std::vector<int32_t>{e4, b8, ad, ff, 3186}, false),
            "\xE4\xB8\xAD\xEF\xBF\xBD world");
  EXPECT_EQ(*(*tok)->Decode(std::vector<int32_t>{e4, b8}, false), "\xEF\xBF\xBD");
  // 🦙 is not a piece: it is spelled in bytes.
  auto llama = (*tok)->Encode("\xF0\x9F\xA6\x99", false);
  ASSERT_TRUE(llama.ok());
  EXPECT_EQ(*llama, (std::vector<int32_t>{29871, 243, 162, 169, 156}));
  EXPECT_EQ(*(*tok)->Decode(*llama, false), "\xF0\x9F\xA6\x99");
}

TEST(SentencePieceTest, MistralModelsLoadByDirectPath) {
  const fs::path dir = TokenizersDir() / "mistral";
  SKIP_WITHOUT(dir);
  struct Expect {
    const char* file;
    int vocab;
  };
  for (const Expect& e : {Expect{"tokenizer.model.v1", 32000},
                          Expect{"mistral_instruct_tokenizer_240323.model.v3", 32768},
                          Expect{"mistral_instruct_tokenizer_241114.model.v7", 32768}}) {
    SCOPED_TRACE(e.file);
    auto loaded = LoadTokenizer(dir / e.file);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    auto* tok = dynamic_cast<SentencePieceTokenizer*>(loaded->get());
    ASSERT_NE(tok, nullptr) << "not loaded as SentencePiece";
    EXPECT_EQ(tok->vocab_size(), e.vocab);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    auto ids = tok->Encode("Hello, world!", true);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(ids->front(), 1);
    EXPECT_EQ(*tok->Decode(*ids, true), "Hello, world!");
  }
  // v3 and v7 control pieces are special and matched in text.
  auto v3 = LoadTokenizer(dir / "mistral_instruct_tokenizer_240323.model.v3");
  ASSERT_TRUE(v3.ok());
  auto ids = (*v3)->Encode("[INST] Hi[/INST]", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), *(*v3)->TokenToId("[INST]"));
  EXPECT_EQ(ids->back(), *(*v3)->TokenToId("[/INST]"));
  EXPECT_TRUE((*v3)->IsSpecial(ids->front()));
  EXPECT_EQ(*(*v3)->Decode(*ids, true), " Hi");
  auto v7 = LoadTokenizer(dir / "mistral_instruct_tokenizer_241114.model.v7");
  ASSERT_TRUE(v7.ok());
  EXPECT_EQ((*v7)->TokenToId("[SYSTEM_PROMPT]"), 16);
  EXPECT_EQ((*v7)->TokenToId("[/SYSTEM_PROMPT]"), 17);
  EXPECT_TRUE((*v7)->IsSpecial(16));
  // Byte pieces sit at 771..1026 in v3/v7.
  EXPECT_EQ((*v7)->TokenToId("<0x00>"), 771);
}

TEST(SentencePieceTest, AgreesWithTokenizerJsonOnLlama2) {
  const fs::path dir = TokenizersDir() / "llama2";
  SKIP_WITHOUT(dir / "tokenizer.model");
  SKIP_WITHOUT(dir / "tokenizer.json");
  auto sp = SentencePieceTokenizer::Load(dir / "tokenizer.model");
  ASSERT_TRUE(sp.ok()) << sp.status();
  const Tokenizer* json = Cached(dir / "tokenizer.json");
  ASSERT_NE(json, nullptr);
  ASSERT_EQ(json->vocab_size(), (*sp)->vocab_size());
  for (int32_t id = 0; id < (*sp)->vocab_size(); ++id) {
    ASSERT_EQ((*sp)->IdToToken(id), json->IdToToken(id)) << id;
    ASSERT_EQ((*sp)->IsSpecial(id), json->IsSpecial(id)) << id;
  }
  auto cases = ReadVocabVectors(dir / "ggml-vocab-llama-spm.gguf.inp");
  ASSERT_TRUE(cases.ok()) << cases.status();
  for (const auto& c : *cases) {
    const std::string text = "<s>" + c.text + "</s> after";
    auto a = (*sp)->Encode(text, true);
    auto b = json->Encode(text, true);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b) << "'" << text << "'";
    for (bool skip : {false, true}) {
      EXPECT_EQ(*(*sp)->Decode(*a, skip), *json->Decode(*a, skip)) << "'" << text << "'";
    }
  }
}

TEST(SentencePieceTest, GarbageBytesAreNotAModel) {
  TempDir dir;
  auto tok = SentencePieceTokenizer::Load(dir.Write("tokenizer.model", "\x0A\x05garbage!"));
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(tok.status().message().find("tokenizer.model"), std::string::npos) << tok.status();
}

// ---------------------------------------------------------------------------------------------
// LoadTokenizer

TEST(LoadTokenizerTest, MissingPathIsNotFoundNamingIt) {
  auto tok = LoadTokenizer("/nonexistent/tandem/model");
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), StatusCode::kNotFound);
  EXPECT_NE(tok.status().message().find("/nonexistent/tandem/model"), std::string::npos);
}

TEST(LoadTokenizerTest, DirectoryWithoutTokenizerFilesIsNotFound) {
  TempDir dir;
  dir.Write("config.json", "{}");
  auto tok = LoadTokenizer(dir.path());
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), StatusCode::kNotFound);
  EXPECT_NE(tok.status().message().find(dir.path().string()), std::string::npos) << tok.status();
}

TEST(LoadTokenizerTest, GarbageFileIsInvalidArgumentNamingIt) {
  TempDir dir;
  std::string garbage;
  for (int i = 0; i < 5000; ++i) garbage.push_back(static_cast<char>((i * 7919) % 251));
  for (const char* name : {"tokenizer.model", "weights.bin"}) {
    auto tok = LoadTokenizer(dir.Write(name, garbage));
    ASSERT_FALSE(tok.ok()) << name;
    EXPECT_EQ(tok.status().code(), StatusCode::kInvalidArgument) << tok.status();
    EXPECT_NE(tok.status().message().find(name), std::string::npos) << tok.status();
  }
  auto empty = LoadTokenizer(dir.Write("empty.model", ""));
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("empty.model"), std::string::npos) << empty.status();
}

TEST(LoadTokenizerTest, PicksTheFormatOfEachFileAndDirectory) {
  const fs::path root = TokenizersDir();
  SKIP_WITHOUT(root / "llama3" / "tokenizer.model");
  SKIP_WITHOUT(root / "llama2" / "tokenizer.model");
  auto tiktoken = LoadTokenizer(root / "llama3" / "tokenizer.model");
  ASSERT_TRUE(tiktoken.ok()) << tiktoken.status();
  EXPECT_NE(dynamic_cast<TiktokenTokenizer*>(tiktoken->get()), nullptr);
  auto sp = LoadTokenizer(root / "llama2" / "tokenizer.model");
  ASSERT_TRUE(sp.ok()) << sp.status();
  EXPECT_NE(dynamic_cast<SentencePieceTokenizer*>(sp->get()), nullptr);

  // A directory with only tokenizer.model (no tokenizer.json) loads it, whatever its format.
  for (const char* model : {"llama3", "llama2"}) {
    TempDir dir;
    fs::copy_file(root / model / "tokenizer.model", dir.path() / "tokenizer.model");
    auto tok = LoadTokenizer(dir.path());
    ASSERT_TRUE(tok.ok()) << tok.status();
    EXPECT_EQ((*tok)->vocab_size(), std::string(model) == "llama3" ? 128256 : 32000);
  }
  // A directory with tokenizer.json prefers it.
  if (fs::exists(root / "llama3" / "tokenizer.json")) {
    auto dir = LoadTokenizer(root / "llama3");
    ASSERT_TRUE(dir.ok()) << dir.status();
    EXPECT_EQ(dynamic_cast<TiktokenTokenizer*>(dir->get()), nullptr);
    EXPECT_EQ((*dir)->vocab_size(), 128256);
  }
}

// ---------------------------------------------------------------------------------------------
// Every tokenizer of every format.

using testing::kRealTokenizers;
using testing::TokenizerCase;

class EveryTokenizerTest : public ::testing::TestWithParam<TokenizerCase> {
 protected:
  void SetUp() override {
    const fs::path file = TokenizersDir() / GetParam().file;
    if (!fs::exists(file)) GTEST_SKIP() << file.string() << " absent (shared data)";
    tok_ = Cached(file);
    ASSERT_NE(tok_, nullptr) << file.string() << " does not load";
  }
  const Tokenizer* tok_ = nullptr;
};

TEST_P(EveryTokenizerTest, DecodeOfEncodeGivesBackEveryVectorInput) {
  auto cases = ReadVocabVectors(TokenizersDir() / GetParam().inputs);
  ASSERT_TRUE(cases.ok()) << cases.status();
  int same = 0;
  for (const auto& c : *cases) {
    for (bool special : {false, true}) {
      auto ids = tok_->Encode(c.text, special);
      ASSERT_TRUE(ids.ok()) << ids.status();
      auto text = tok_->Decode(*ids, /*skip_special_tokens=*/true);
      ASSERT_TRUE(text.ok()) << text.status();
      EXPECT_EQ(*text, c.text) << "ids:" << Ids(*ids);
      if (!special && *text == c.text) ++same;
    }
  }
  std::printf("[ roundtrip] %s: %d/%zu\n", GetParam().name, same, cases->size());
}

TEST_P(EveryTokenizerTest, EncodesAndDecodesTheSameFromManyThreadsAtOnce) {
  auto cases = ReadVocabVectors(TokenizersDir() / GetParam().inputs);
  ASSERT_TRUE(cases.ok()) << cases.status();
  std::vector<std::vector<int32_t>> want;
  for (const auto& c : *cases) want.push_back(*tok_->Encode(c.text, true));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int rep = 0; rep < 10; ++rep) {
        for (size_t i = 0; i < cases->size(); ++i) {
          auto ids = tok_->Encode((*cases)[i].text, true);
          if (!ids.ok() || *ids != want[i] || *tok_->Decode(*ids, true) != (*cases)[i].text) {
            ++mismatches;
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_P(EveryTokenizerTest, EncodeRejectsInvalidUtf8NamingTheOffset) {
  for (const std::string& bad : {std::string("abc\xFF"), std::string("abc\xE4\xB8"),
                                 std::string("abc\xC0\xAF"), std::string("abc\xED\xA0\x80")}) {
    auto ids = tok_->Encode(bad, true);
    ASSERT_FALSE(ids.ok());
    EXPECT_EQ(ids.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(ids.status().message().find("3"), std::string::npos) << ids.status();
  }
}

TEST_P(EveryTokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  for (int32_t id : {-1, tok_->vocab_size(), 1 << 30}) {
    auto text = tok_->Decode(std::vector<int32_t>{id}, false);
    ASSERT_FALSE(text.ok()) << id;
    EXPECT_EQ(text.status().code(), StatusCode::kInvalidArgument);
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, EveryTokenizerTest, ::testing::ValuesIn(kRealTokenizers),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace tandem::tokenizer
