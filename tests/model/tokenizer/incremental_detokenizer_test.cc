// IncrementalDetokenizer: streaming text equals the full decode, for every tokenizer of every
// format in ../shared/data/tokenizers, with and without special tokens, prompt context, byte
// pieces and random (often invalid) id sequences; plus its window and hold-back behaviour on a
// small fake tokenizer.
#include "model/tokenizer/incremental_detokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/utf8.h"
#include "vocab_vectors.h"

namespace tandem::tokenizer {
namespace {

namespace fs = std::filesystem;
using testing::ReadVocabVectors;
using testing::SharedDataDir;

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Pushes `ids` one at a time; returns the concatenated output. Every piece must be whole UTF-8.
std::string Stream(IncrementalDetokenizer& detok, const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = detok.Push(id);
    EXPECT_EQ(FindInvalidUtf8(piece), std::nullopt) << "half a character emitted";
    out += piece;
  }
  const std::string rest = detok.Flush();
  EXPECT_EQ(FindInvalidUtf8(rest), std::nullopt);
  return out + rest;
}

// ---------------------------------------------------------------------------------------------
// A byte tokenizer for exact control: id i < 256 is byte i, 256 is "<sp>" (special), 257 is
// " word", 258 is "" (decodes to nothing). Counts how many ids each Decode sees.

class FakeTokenizer : public Tokenizer {
 public:
  StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool) const override {
    return std::vector<int32_t>(text.begin(), text.end());
  }
  StatusOr<std::string> Decode(std::span<const int32_t> ids, bool skip) const override {
    max_decoded_ = std::max(max_decoded_, ids.size());
    std::string bytes;
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size()) return InvalidArgumentError("bad id");
      if (id < 256) bytes.push_back(static_cast<char>(id));
      if (id == 256 && !skip) bytes += "<sp>";
      if (id == 257) bytes += " word";
    }
    return SanitizeUtf8(bytes);
  }
  int vocab_size() const override { return 259; }
  std::optional<std::string> IdToToken(int32_t) const override { return std::nullopt; }
  std::optional<int32_t> TokenToId(std::string_view) const override { return std::nullopt; }
  bool IsSpecial(int32_t id) const override { return id == 256; }

  mutable size_t max_decoded_ = 0;
};

TEST(IncrementalDetokenizerTest, HoldsBackACharacterUntilItsLastByte) {
  FakeTokenizer tok;
  IncrementalDetokenizer detok(tok, false);
  EXPECT_EQ(detok.Push('a'), "a");
  EXPECT_EQ(detok.Push(0xF0), "");
  EXPECT_EQ(detok.Push(0x9F), "");
  EXPECT_EQ(detok.Push(0xA6), "");
  EXPECT_EQ(detok.Push(0x99), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(detok.Push(257), " word");
  EXPECT_EQ(detok.Flush(), "");
}

TEST(IncrementalDetokenizerTest, FlushGivesTrulyInvalidBytesAsReplacement) {
  FakeTokenizer tok;
  IncrementalDetokenizer detok(tok, false);
  EXPECT_EQ(detok.Push('a'), "a");
  EXPECT_EQ(detok.Push(0xE4), "");
  EXPECT_EQ(detok.Push(0xB8), "");
  EXPECT_EQ(detok.Flush(), kReplacement);
}

TEST(IncrementalDetokenizerTest, InvalidByteFollowedByTextIsEmittedWithTheText) {
  FakeTokenizer tok;
  IncrementalDetokenizer detok(tok, false);
  EXPECT_EQ(detok.Push(0xFF), "");
  EXPECT_EQ(detok.Push('b'), std::string(kReplacement) + "b");
}

TEST(IncrementalDetokenizerTest, LongRunOfInvalidBytesIsReleasedWithoutWaitingForFlush) {
  FakeTokenizer tok;
  IncrementalDetokenizer detok(tok, false);
  std::string out;
  for (int i = 0; i < 40; ++i) out += detok.Push(0xFF);
  EXPECT_GE(out.size(), 30 * kReplacement.size());
  // The window: the last emitted stretch plus what is held.
  EXPECT_LE(tok.max_decoded_, 2 * IncrementalDetokenizer::kMaxHeldTokens);
  out += detok.Flush();
  std::string want;
  for (int i = 0; i < 40; ++i) want += kReplacement;
  EXPECT_EQ(out, want);
}

TEST(IncrementalDetokenizerTest, ReleasingInvalidBytesNeverBreaksACharacterStillArriving) {
  FakeTokenizer tok;
  IncrementalDetokenizer detok(tok, false);
  std::vector<int32_t> ids(12, 0xFF);
  for (int32_t b : {0xF0, 0x9F, 0xA6, 0x99, int32_t{'x'}}) ids.push_back(b);
  EXPECT_EQ(Stream(detok, ids), *tok.Decode(ids, false));
}

TEST(IncrementalDetokenizerTest, DecodeWindowStaysSmallOnLongStreams) {
  FakeTokenizer tok;
  IncrementalDetokenizer detok(tok, false);
  std::vector<int32_t> ids;
  for (int i = 0; i < 20000; ++i) ids.push_back(i % 7 == 0 ? 257 : 'a' + i % 26);
  const std::string full = *tok.Decode(ids, false);
  tok.max_decoded_ = 0;
  EXPECT_EQ(Stream(detok, ids), full);
  EXPECT_LE(tok.max_decoded_, 4u);
}

TEST(IncrementalDetokenizerTest, SkippedSpecialTokensAddNothing) {
  FakeTokenizer tok;
  IncrementalDetokenizer keep(tok, false), skip(tok, true);
  const std::vector<int32_t> ids = {256, 'h', 'i', 256, 256, 257, 256};
  EXPECT_EQ(Stream(keep, ids), "<sp>hi<sp><sp> word<sp>");
  EXPECT_EQ(Stream(skip, ids), "hi word");
}

TEST(IncrementalDetokenizerTest, IdsOutsideTheVocabularyAreDroppedAndCounted) {
  FakeTokenizer tok;
  IncrementalDetokenizer detok(tok, false);
  EXPECT_EQ(detok.Push('a'), "a");
  EXPECT_EQ(detok.Push(-1), "");
  EXPECT_EQ(detok.Push(100000), "");
  EXPECT_EQ(detok.Push('b'), "b");
  EXPECT_EQ(detok.num_tokens(), 2u);
  EXPECT_EQ(detok.dropped_ids(), 2u);
}

TEST(IncrementalDetokenizerTest, PromptContextIsNotEmitted) {
  FakeTokenizer tok;
  const std::vector<int32_t> prompt = {'p', 'r', 'o', 'm', 'p', 't', 0xE4};
  IncrementalDetokenizer detok(tok, false, prompt);
  // The prompt ended mid-character; the first generated bytes complete it.
  EXPECT_EQ(detok.Push(0xB8), "");
  EXPECT_EQ(detok.Push(0xAD), "\xE4\xB8\xAD");
  EXPECT_EQ(detok.Push(257), " word");
}

// ---------------------------------------------------------------------------------------------
// Every real tokenizer.

using testing::kRealTokenizers;
using testing::TokenizerCase;

// Loads each file once per test binary, through LoadTokenizer (so no format's internals leak in).
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

class StreamingTest : public ::testing::TestWithParam<TokenizerCase> {
 protected:
  void SetUp() override {
    const fs::path file = SharedDataDir() / "tokenizers" / GetParam().file;
    if (!fs::exists(file)) GTEST_SKIP() << file.string() << " absent (shared data)";
    tok_ = Cached(file);
    ASSERT_NE(tok_, nullptr) << file.string() << " does not load";
    auto cases = ReadVocabVectors(SharedDataDir() / "tokenizers" / GetParam().inputs);
    ASSERT_TRUE(cases.ok()) << cases.status();
    for (auto& c : *cases) texts_.push_back(std::move(c.text));
  }

  const Tokenizer* tok_ = nullptr;
  std::vector<std::string> texts_;
};

TEST_P(StreamingTest, StreamEqualsFullDecodeOnEveryVectorInput) {
  int same = 0, total = 0;
  for (const auto& text : texts_) {
    for (bool add_special : {false, true}) {
      auto ids = tok_->Encode(text, add_special);
      ASSERT_TRUE(ids.ok()) << ids.status();
      for (bool skip : {false, true}) {
        IncrementalDetokenizer detok(*tok_, skip);
        const std::string streamed = Stream(detok, *ids);
        const std::string full = *tok_->Decode(*ids, skip);
        EXPECT_EQ(streamed, full) << "text '" << text << "' skip=" << skip;
        same += streamed == full;
        ++total;
      }
    }
  }
  std::printf("[ streaming] %s: %d/%d\n", GetParam().name, same, total);
}

TEST_P(StreamingTest, StreamWithPromptContextEqualsTheDecodedContinuation) {
  int checked = 0;
  for (size_t i = 0; i + 1 < texts_.size(); ++i) {
    // Prompt: one vector input; generation: the next one, as the model would continue it.
    auto prompt = tok_->Encode(texts_[i], true);
    auto all = tok_->Encode(texts_[i] + " " + texts_[i + 1], true);
    ASSERT_TRUE(prompt.ok() && all.ok());
    // Cut the combined ids where the prompt's tokens still match it.
    size_t cut = 0;
    while (cut < prompt->size() && cut < all->size() && (*prompt)[cut] == (*all)[cut]) ++cut;
    const std::vector<int32_t> context(all->begin(), all->begin() + cut);
    const std::vector<int32_t> generated(all->begin() + cut, all->end());
    for (bool skip : {false, true}) {
      const std::string before = *tok_->Decode(context, skip);
      const std::string whole = *tok_->Decode(*all, skip);
      if (!whole.starts_with(before) || std::string_view(before).ends_with(kReplacement)) {
        continue;  // the prompt's text is not final; no continuation to compare with
      }
      IncrementalDetokenizer detok(*tok_, skip, context);
      EXPECT_EQ(Stream(detok, generated), whole.substr(before.size()))
          << "prompt '" << texts_[i] << "' then '" << texts_[i + 1] << "' skip=" << skip;
      ++checked;
    }
  }
  EXPECT_GT(checked, static_cast<int>(texts_.size()));
}

TEST_P(StreamingTest, StreamEqualsFullDecodeOnRandomIds) {
  const uint32_t seed = 20240611;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> any(0, tok_->vocab_size() - 1);
  // Low ids are where byte tokens live (byte-level singles, <0xNN> pieces): split characters.
  std::uniform_int_distribution<int32_t> low(0, std::min(tok_->vocab_size(), 1100) - 1);
  for (int seq = 0; seq < 30; ++seq) {
    std::vector<int32_t> ids;
    for (int i = 0; i < 120; ++i) ids.push_back(rng() % 3 == 0 ? any(rng) : low(rng));
    for (bool skip : {false, true}) {
      IncrementalDetokenizer detok(*tok_, skip);
      ASSERT_EQ(Stream(detok, ids), *tok_->Decode(ids, skip))
          << "seed " << seed << " sequence " << seq << " skip=" << skip;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, StreamingTest, ::testing::ValuesIn(kRealTokenizers),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace tandem::tokenizer
