#include "kvcache/block_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <vector>

#include "kvcache/clock.h"
#include "kvcache/eviction_policy.h"

namespace tandem::kvcache {
namespace {

std::vector<BlockId> AllocateOrDie(BlockPool& pool, int n) {
  StatusOr<std::vector<BlockId>> blocks = pool.Allocate(n);
  EXPECT_TRUE(blocks.ok()) << blocks.status();
  return blocks.ok() ? *blocks : std::vector<BlockId>();
}

// Allocates one block per hash, registers it, and returns the blocks (still held).
std::vector<BlockId> AllocateRegistered(BlockPool& pool, const std::vector<BlockHash>& hashes) {
  std::vector<BlockId> blocks = AllocateOrDie(pool, static_cast<int>(hashes.size()));
  for (size_t i = 0; i < blocks.size(); ++i) pool.Register(blocks[i], hashes[i]);
  return blocks;
}

class BlockPoolTest : public ::testing::Test {
 protected:
  BlockPool MakePool(int num_blocks, bool prefix_caching = true) {
    return BlockPool(
        BlockPoolOptions{.num_blocks = num_blocks, .enable_prefix_caching = prefix_caching},
        MakeLruPolicy(clock_), &clock_);
  }

  ManualClock clock_;
};

TEST_F(BlockPoolTest, FreshPoolHasEveryBlockFree) {
  BlockPool pool = MakePool(8);
  EXPECT_EQ(pool.num_blocks(), 8);
  EXPECT_EQ(pool.num_free(), 8);
  EXPECT_EQ(pool.num_available(), 8);
  EXPECT_EQ(pool.num_cached(), 0);
}

TEST_F(BlockPoolTest, AllocateHandsOutDistinctBlocksWithOneReference) {
  BlockPool pool = MakePool(8);
  std::vector<BlockId> blocks = AllocateOrDie(pool, 5);
  ASSERT_EQ(blocks.size(), 5u);
  std::set<BlockId> distinct(blocks.begin(), blocks.end());
  EXPECT_EQ(distinct.size(), 5u);
  for (BlockId block : blocks) {
    EXPECT_GE(block.value(), 0);
    EXPECT_LT(block.value(), 8);
    EXPECT_EQ(pool.ref_count(block), 1);
    EXPECT_EQ(pool.hash_of(block), std::nullopt);
  }
  EXPECT_EQ(pool.num_available(), 3);
}

TEST_F(BlockPoolTest, AllocateZeroReturnsNothing) {
  BlockPool pool = MakePool(2);
  EXPECT_TRUE(AllocateOrDie(pool, 0).empty());
  EXPECT_EQ(pool.num_available(), 2);
}

TEST_F(BlockPoolTest, AllocateFailsWhenExhausted) {
  BlockPool pool = MakePool(4);
  std::vector<BlockId> held = AllocateRegistered(pool, {11, 12});
  pool.Release(held);                                   // Two cached blocks.
  std::vector<BlockId> other = AllocateOrDie(pool, 1);  // One free block left.
  ASSERT_EQ(pool.num_available(), 3);

  StatusOr<std::vector<BlockId>> result = pool.Allocate(4);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kResourceExhausted);
  // Nothing changed: no eviction, no hash dropped.
  EXPECT_EQ(pool.num_available(), 3);
  EXPECT_EQ(pool.num_cached(), 2);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{11, 12}), 2);
}

TEST_F(BlockPoolTest, ReleasedUnregisteredBlockBecomesFree) {
  BlockPool pool = MakePool(2);
  std::vector<BlockId> blocks = AllocateOrDie(pool, 2);
  EXPECT_EQ(pool.num_available(), 0);
  pool.Release(blocks);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_EQ(pool.ref_count(blocks[0]), 0);
}

TEST_F(BlockPoolTest, ReleasedRegisteredBlockIsReusableByPrefix) {
  BlockPool pool = MakePool(4);
  std::vector<BlockId> blocks = AllocateRegistered(pool, {100, 200});
  pool.Release(blocks);
  EXPECT_EQ(pool.num_cached(), 2);
  EXPECT_EQ(pool.num_available(), 4);  // Cached blocks count as available.

  std::vector<BlockId> matched = pool.MatchPrefix(std::vector<BlockHash>{100, 200});
  EXPECT_EQ(matched, blocks);
  EXPECT_EQ(pool.ref_count(blocks[0]), 1);
  EXPECT_EQ(pool.ref_count(blocks[1]), 1);
  EXPECT_EQ(pool.num_cached(), 0);  // Held again, so no longer evictable.
  EXPECT_EQ(pool.num_available(), 2);
  EXPECT_EQ(pool.hash_of(blocks[0]), BlockHash{100});
}

TEST_F(BlockPoolTest, MatchPrefixStopsAtFirstMiss) {
  BlockPool pool = MakePool(8);
  std::vector<BlockId> blocks = AllocateRegistered(pool, {1, 2, 3});
  pool.Release(blocks);

  // 2 is indexed, but the chain breaks at 9, so only the first block matches.
  std::vector<BlockHash> query = {1, 9, 2, 3};
  EXPECT_EQ(pool.CountPrefix(query), 1);
  std::vector<BlockId> matched = pool.MatchPrefix(query);
  ASSERT_EQ(matched.size(), 1u);
  EXPECT_EQ(matched[0], blocks[0]);
  EXPECT_EQ(pool.ref_count(blocks[1]), 0);
  EXPECT_EQ(pool.num_cached(), 2);

  EXPECT_TRUE(pool.MatchPrefix(std::vector<BlockHash>{9, 1}).empty());
  EXPECT_TRUE(pool.MatchPrefix(std::vector<BlockHash>{}).empty());
}

TEST_F(BlockPoolTest, MatchPrefixSharesHeldBlocks) {
  BlockPool pool = MakePool(4);
  std::vector<BlockId> first = AllocateRegistered(pool, {7, 8});
  std::vector<BlockId> second = pool.MatchPrefix(std::vector<BlockHash>{7, 8});
  EXPECT_EQ(second, first);
  EXPECT_EQ(pool.ref_count(first[0]), 2);

  pool.Release(first);
  EXPECT_EQ(pool.ref_count(first[0]), 1);
  EXPECT_EQ(pool.num_cached(), 0);  // Still held by the second sequence.
  pool.Release(second);
  EXPECT_EQ(pool.num_cached(), 2);
}

TEST_F(BlockPoolTest, CountPrefixChangesNothing) {
  BlockPool pool = MakePool(4);
  std::vector<BlockId> blocks = AllocateRegistered(pool, {5, 6});
  pool.Release(blocks);
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{5, 6, 7}), 2);
  EXPECT_EQ(pool.ref_count(blocks[0]), 0);
  EXPECT_EQ(pool.num_cached(), 2);
}

TEST_F(BlockPoolTest, AllocatePrefersFreeBlocksOverCached) {
  BlockPool pool = MakePool(4);
  std::vector<BlockId> cached = AllocateRegistered(pool, {1, 2});
  pool.Release(cached);
  std::vector<BlockId> fresh = AllocateOrDie(pool, 2);
  for (BlockId block : fresh) {
    EXPECT_TRUE(std::find(cached.begin(), cached.end(), block) == cached.end());
  }
  EXPECT_EQ(pool.num_cached(), 2);
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{1, 2}), 2);
}

TEST_F(BlockPoolTest, EvictsLeastRecentlyFreedFirst) {
  BlockPool pool = MakePool(2);
  std::vector<BlockId> a = AllocateRegistered(pool, {10});
  std::vector<BlockId> b = AllocateRegistered(pool, {20});
  // b is freed first, a later: b is the older cached block.
  pool.Release(b);
  clock_.Advance(1000);
  pool.Release(a);

  std::vector<BlockId> taken = AllocateOrDie(pool, 1);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0], b[0]);
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{20}), 0);
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{10}), 1);
}

TEST_F(BlockPoolTest, ReleaseEvictsLastBlocksOfASequenceFirst) {
  BlockPool pool = MakePool(3);
  std::vector<BlockId> seq = AllocateRegistered(pool, {1, 2, 3});
  pool.Release(seq);  // Same instant; released in reverse: 3, 2, 1.

  std::vector<BlockId> taken = AllocateOrDie(pool, 1);
  EXPECT_EQ(taken[0], seq[2]);
  // The prefix {1, 2} survives, so a request sharing it still hits.
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{1, 2, 3}), 2);
  taken = AllocateOrDie(pool, 1);
  EXPECT_EQ(taken[0], seq[1]);
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{1, 2, 3}), 1);
}

TEST_F(BlockPoolTest, EvictionDropsHash) {
  BlockPool pool = MakePool(1);
  std::vector<BlockId> first = AllocateRegistered(pool, {42});
  pool.Release(first);
  ASSERT_EQ(pool.num_cached(), 1);

  std::vector<BlockId> second = AllocateOrDie(pool, 1);
  ASSERT_EQ(second, first);  // The only block, evicted and reused.
  EXPECT_EQ(pool.hash_of(second[0]), std::nullopt);
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{42}), 0);
  EXPECT_TRUE(pool.MatchPrefix(std::vector<BlockHash>{42}).empty());
  EXPECT_EQ(pool.ref_count(second[0]), 1);

  // Released without a registration, the block is free rather than cached.
  pool.Release(second);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.num_cached(), 0);
}

TEST_F(BlockPoolTest, MatchedCachedBlockIsNotEvicted) {
  BlockPool pool = MakePool(2);
  std::vector<BlockId> seq = AllocateRegistered(pool, {1, 2});
  pool.Release(seq);
  std::vector<BlockId> matched = pool.MatchPrefix(std::vector<BlockHash>{1});
  ASSERT_EQ(matched.size(), 1u);

  std::vector<BlockId> taken = AllocateOrDie(pool, 1);
  EXPECT_EQ(taken[0], seq[1]);
  EXPECT_FALSE(pool.Allocate(1).ok());  // The matched block is held, so nothing is left.
  EXPECT_EQ(pool.ref_count(seq[0]), 1);
  EXPECT_EQ(pool.hash_of(seq[0]), BlockHash{1});
}

TEST_F(BlockPoolTest, DuplicateHashKeepsFirst) {
  BlockPool pool = MakePool(4);
  std::vector<BlockId> first = AllocateRegistered(pool, {77});
  std::vector<BlockId> second = AllocateRegistered(pool, {77});  // Same content, computed twice.
  EXPECT_EQ(pool.hash_of(first[0]), BlockHash{77});
  EXPECT_EQ(pool.hash_of(second[0]), std::nullopt);

  pool.Release(second);
  EXPECT_EQ(pool.num_cached(), 0);  // The duplicate is simply free.
  pool.Release(first);
  EXPECT_EQ(pool.num_cached(), 1);
  EXPECT_EQ(pool.MatchPrefix(std::vector<BlockHash>{77}), first);
}

TEST_F(BlockPoolTest, RegisteringTheSameHashTwiceIsHarmless) {
  BlockPool pool = MakePool(2);
  std::vector<BlockId> blocks = AllocateRegistered(pool, {5});
  pool.Register(blocks[0], 5);
  EXPECT_EQ(pool.hash_of(blocks[0]), BlockHash{5});
  pool.Release(blocks);
  EXPECT_EQ(pool.num_cached(), 1);
}

TEST_F(BlockPoolTest, PrefixCachingDisabled) {
  BlockPool pool = MakePool(2, /*prefix_caching=*/false);
  std::vector<BlockId> blocks = AllocateRegistered(pool, {1, 2});
  EXPECT_EQ(pool.hash_of(blocks[0]), std::nullopt);
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{1, 2}), 0);
  pool.Release(blocks);
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_TRUE(pool.MatchPrefix(std::vector<BlockHash>{1, 2}).empty());
}

TEST_F(BlockPoolTest, ClearCacheFreesCachedAndUnregistersHeld) {
  BlockPool pool = MakePool(4);
  std::vector<BlockId> cached = AllocateRegistered(pool, {1, 2});
  pool.Release(cached);
  std::vector<BlockId> held = AllocateRegistered(pool, {3});

  pool.ClearCache();
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_EQ(pool.ref_count(held[0]), 1);
  EXPECT_EQ(pool.hash_of(held[0]), std::nullopt);
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{1}), 0);
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{3}), 0);

  pool.Release(held);
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(AllocateOrDie(pool, 4).size(), 4u);
}

TEST_F(BlockPoolTest, DefaultPolicyAndClockWork) {
  BlockPool pool(BlockPoolOptions{.num_blocks = 2});
  std::vector<BlockId> blocks = AllocateRegistered(pool, {1, 2});
  pool.Release(blocks);
  EXPECT_EQ(pool.num_cached(), 2);
  std::vector<BlockId> taken = AllocateOrDie(pool, 1);
  EXPECT_EQ(taken[0], blocks[1]);
}

TEST_F(BlockPoolTest, ManyCyclesKeepCountsConsistent) {
  constexpr int kBlocks = 16;
  BlockPool pool = MakePool(kBlocks);
  auto hashes_of_round = [](int round) {
    const BlockHash base = static_cast<BlockHash>(round % 7) * 10;
    return std::vector<BlockHash>{base, base + 1, base + 2};
  };
  for (int round = 0; round < 200; ++round) {
    const std::vector<BlockHash> hashes = hashes_of_round(round);
    std::vector<BlockId> blocks = pool.MatchPrefix(hashes);
    const size_t matched = blocks.size();
    StatusOr<std::vector<BlockId>> fresh = pool.Allocate(static_cast<int>(3 - matched));
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    for (size_t i = 0; i < fresh->size(); ++i) pool.Register((*fresh)[i], hashes[matched + i]);
    blocks.insert(blocks.end(), fresh->begin(), fresh->end());
    ASSERT_EQ(pool.num_available(), kBlocks - 3);
    pool.Release(blocks);
    clock_.Advance(1);
    ASSERT_EQ(pool.num_available(), kBlocks);
    ASSERT_EQ(pool.num_free() + pool.num_cached(), kBlocks);
  }
  // 7 distinct prefixes of 3 blocks need 21 blocks and only 16 fit, yet the latest one hits.
  EXPECT_EQ(pool.CountPrefix(hashes_of_round(199)), 3);
}

using BlockPoolDeathTest = BlockPoolTest;

TEST_F(BlockPoolDeathTest, ReleasingAnUnheldBlockAborts) {
  BlockPool pool = MakePool(2);
  std::vector<BlockId> blocks = AllocateOrDie(pool, 1);
  pool.Release(blocks);
  EXPECT_DEATH(pool.Release(blocks), "check failed");
}

TEST_F(BlockPoolDeathTest, OutOfRangeBlockAborts) {
  BlockPool pool = MakePool(2);
  std::vector<BlockId> bad = {BlockId(2)};
  EXPECT_DEATH(pool.Release(bad), "check failed");
  EXPECT_DEATH(pool.ref_count(BlockId(-1)), "check failed");
}

TEST_F(BlockPoolDeathTest, RegisteringAnUnheldBlockAborts) {
  BlockPool pool = MakePool(2);
  EXPECT_DEATH(pool.Register(BlockId(0), 1), "check failed");
}

TEST_F(BlockPoolDeathTest, RegisteringABlockUnderASecondHashAborts) {
  BlockPool pool = MakePool(2);
  std::vector<BlockId> blocks = AllocateRegistered(pool, {1});
  EXPECT_DEATH(pool.Register(blocks[0], 2), "check failed");
}

}  // namespace
}  // namespace tandem::kvcache
