#include "tandem/block_hash.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

namespace tandem {
namespace {

// Vectors made by scripts/make_golden.py with python-xxhash: an independent implementation of
// the ARCHITECTURE §3 contract.
nlohmann::json LoadVectors() {
  std::ifstream in(std::string(TANDEM_SOURCE_DIR) + "/tests/data/golden/block_hash.json");
  return nlohmann::json::parse(in);
}

TEST(BlockHashTest, MatchesIndependentImplementation) {
  const nlohmann::json v = LoadVectors();
  EXPECT_EQ(BlockHashSeed(v["identity"].get<std::string>()), v["seed"].get<uint64_t>());
  EXPECT_EQ(BlockHashSeed(v["identity"].get<std::string>(), v["salt"].get<std::string>()),
            v["salted_seed"].get<uint64_t>());
  const auto tokens = v["tokens"].get<std::vector<int32_t>>();
  const auto expected = v["hashes"].get<std::vector<uint64_t>>();
  const auto hashes = HashBlocks(tokens, v["block_size"].get<int>(), v["seed"].get<uint64_t>());
  EXPECT_EQ(hashes, expected);
}

TEST(BlockHashTest, OnlyFullBlocksAreHashed) {
  std::vector<int32_t> tokens(47, 5);
  EXPECT_EQ(HashBlocks(tokens, 16, 1).size(), 2u);
  EXPECT_TRUE(HashBlocks(std::vector<int32_t>(15, 1), 16, 1).empty());
}

TEST(BlockHashTest, ChainingFromParentEqualsHashingTheWhole) {
  std::vector<int32_t> tokens(64);
  for (int i = 0; i < 64; ++i) tokens[i] = i * 7919 % 32000;
  const auto whole = HashBlocks(tokens, 16, 42);
  const auto head = HashBlocks(std::span(tokens).first(32), 16, 42);
  const auto tail = HashBlocks(std::span(tokens).subspan(32), 16, 42, head.back());
  ASSERT_EQ(whole.size(), 4u);
  EXPECT_EQ(whole[0], head[0]);
  EXPECT_EQ(whole[2], tail[0]);
  EXPECT_EQ(whole[3], tail[1]);
}

TEST(BlockHashTest, PrefixChangesEveryLaterHash) {
  std::vector<int32_t> a(48, 3), b(48, 3);
  b[0] = 4;
  const auto ha = HashBlocks(a, 16, 9);
  const auto hb = HashBlocks(b, 16, 9);
  for (size_t i = 0; i < ha.size(); ++i) EXPECT_NE(ha[i], hb[i]);
  // Same block contents at the same depth but a different seed (model or salt) differ too.
  EXPECT_NE(HashBlocks(a, 16, 9)[0], HashBlocks(a, 16, 10)[0]);
}

}  // namespace
}  // namespace tandem
