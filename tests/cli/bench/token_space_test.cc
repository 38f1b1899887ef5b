// Mooncake hash ids become token blocks: equal ids give identical blocks, different ids different
// blocks, in every request; all ids stay inside the vocabulary and above its low ids.
#include "cli/bench/token_space.h"

#include <gtest/gtest.h>

#include <set>

namespace tandem::bench {
namespace {

std::vector<int32_t> Prompt(const TokenSpace& space, std::vector<int64_t> ids, int input_len,
                            uint64_t index, int block_size = 16) {
  RequestSpec spec;
  spec.hash_ids = std::move(ids);
  spec.input_len = input_len;
  std::vector<int32_t> out;
  space.AppendPrompt(spec, index, block_size, &out);
  return out;
}

std::vector<int32_t> Block(const std::vector<int32_t>& prompt, int i, int block_size = 16) {
  return {prompt.begin() + i * block_size, prompt.begin() + (i + 1) * block_size};
}

TEST(TokenSpaceTest, EqualHashIdsGiveEqualBlocksAcrossRequests) {
  const TokenSpace space(32000, 0);
  const auto a = Prompt(space, {7, 8, 9}, 48, 0);
  const auto b = Prompt(space, {7, 8, 10}, 48, 1);
  const auto c = Prompt(space, {11, 8}, 32, 2);
  EXPECT_EQ(Block(a, 0), Block(b, 0));  // The shared prefix reaches the server as one.
  EXPECT_EQ(Block(a, 1), Block(b, 1));
  EXPECT_EQ(Block(a, 1), Block(c, 1));  // Equal id, other position: still the same block.
}

TEST(TokenSpaceTest, DifferentHashIdsGiveDifferentBlocks) {
  const TokenSpace space(32000, 0);
  std::set<std::vector<int32_t>> blocks;
  for (int64_t id = 0; id < 200; ++id) blocks.insert(Block(Prompt(space, {id}, 16, id), 0));
  EXPECT_EQ(blocks.size(), 200u);
  const auto a = Prompt(space, {7, 8, 9}, 48, 0);
  const auto b = Prompt(space, {7, 8, 10}, 48, 0);
  EXPECT_NE(Block(a, 2), Block(b, 2));
}

TEST(TokenSpaceTest, PromptIsTruncatedOrFilledWithTokensOfItsOwn) {
  const TokenSpace space(32000, 0);
  const auto cut = Prompt(space, {1, 2}, 20, 0);
  ASSERT_EQ(cut.size(), 20u);
  const auto full = Prompt(space, {1, 2}, 32, 0);
  EXPECT_TRUE(std::equal(cut.begin(), cut.end(), full.begin()));
  // Beyond its blocks a request gets tokens unique to it.
  const auto x = Prompt(space, {1}, 48, 5);
  const auto y = Prompt(space, {1}, 48, 6);
  ASSERT_EQ(x.size(), 48u);
  EXPECT_EQ(Block(x, 0), Block(y, 0));
  EXPECT_NE(Block(x, 1), Block(y, 1));
  EXPECT_NE(Block(x, 2), Block(y, 2));
  // ... which never equal a block's.
  EXPECT_NE(Block(x, 1), Block(Prompt(space, {2}, 16, 5), 0));
}

TEST(TokenSpaceTest, IdsStayInsideTheVocabularyAboveItsLowIds) {
  for (int32_t vocab : {2, 100, 4000, 151936}) {
    const TokenSpace space(vocab, 3);
    EXPECT_EQ(space.low(), std::min(1000, vocab / 4));
    const auto p = Prompt(space, {1, 2, 3}, 2000, 9);
    for (int32_t id : p) {
      ASSERT_GE(id, space.low()) << "vocab " << vocab;
      ASSERT_LT(id, vocab);
    }
  }
}

TEST(TokenSpaceTest, TheSeedChangesEveryPromptAndRepeatsIt) {
  const auto a = Prompt(TokenSpace(32000, 1), {4}, 16, 0);
  EXPECT_EQ(a, Prompt(TokenSpace(32000, 1), {4}, 16, 0));
  EXPECT_NE(a, Prompt(TokenSpace(32000, 2), {4}, 16, 0));
}

}  // namespace
}  // namespace tandem::bench
