#include "router/kv_indexer.h"

#include <gtest/gtest.h>

#include <vector>

namespace tandem::router {
namespace {

std::vector<PrefixMatch> Match(const KvIndexer& index, const std::vector<BlockHash>& hashes) {
  std::vector<PrefixMatch> out;
  index.FindMatches(hashes, &out);
  std::sort(out.begin(), out.end(),
            [](const PrefixMatch& a, const PrefixMatch& b) { return a.worker < b.worker; });
  return out;
}

TEST(KvIndexerTest, MatchesTheLongestPrefixPerWorker) {
  KvIndexer index;
  index.Stored(0, KvTier::kDevice, std::vector<BlockHash>{10, 11, 12, 13});
  index.Stored(1, KvTier::kDevice, std::vector<BlockHash>{10, 11});
  index.Stored(2, KvTier::kDevice, std::vector<BlockHash>{20, 21});  // Another prompt.
  const auto m = Match(index, {10, 11, 12, 99});
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].worker, 0u);
  EXPECT_EQ(m[0].device_blocks, 3);
  EXPECT_EQ(m[1].worker, 1u);
  EXPECT_EQ(m[1].device_blocks, 2);
  EXPECT_TRUE(Match(index, {99, 10}).empty());
  EXPECT_TRUE(Match(index, {}).empty());
  EXPECT_EQ(index.num_blocks(), 6u);
  EXPECT_EQ(index.num_entries(), 8u);
  EXPECT_EQ(index.worker_blocks(0), 4u);
  EXPECT_EQ(index.worker_blocks(7), 0u);
}

TEST(KvIndexerTest, APrefixEndsAtTheFirstMissingBlockEvenIfLaterOnesAreHeld) {
  KvIndexer index;
  index.Stored(0, KvTier::kDevice, std::vector<BlockHash>{1, 2, 3, 4});
  index.Removed(0, KvTier::kDevice, std::vector<BlockHash>{2});
  const auto m = Match(index, {1, 2, 3, 4});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].blocks(), 1);
}

TEST(KvIndexerTest, CountsEachBlockOnItsBestTier) {
  KvIndexer index;
  index.Stored(0, KvTier::kDevice, std::vector<BlockHash>{1, 2});
  index.Stored(0, KvTier::kHost, std::vector<BlockHash>{1, 2, 3});
  index.Stored(0, KvTier::kDisk, std::vector<BlockHash>{3, 4, 5});
  auto m = Match(index, {1, 2, 3, 4, 5, 6});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].device_blocks, 2);
  EXPECT_EQ(m[0].host_blocks, 1);
  EXPECT_EQ(m[0].disk_blocks, 2);
  EXPECT_EQ(index.worker_blocks(0), 5u);  // Blocks, not (block, tier) pairs.

  // Leaving the device, block 1 is still on the host: the prefix holds, on a worse tier.
  index.Removed(0, KvTier::kDevice, std::vector<BlockHash>{1});
  m = Match(index, {1, 2, 3});
  EXPECT_EQ(m[0].device_blocks, 1);
  EXPECT_EQ(m[0].host_blocks, 2);
  // Gone from every tier, it breaks the prefix and leaves the count.
  index.Removed(0, KvTier::kHost, std::vector<BlockHash>{1});
  EXPECT_TRUE(Match(index, {1, 2, 3}).empty());
  EXPECT_EQ(index.worker_blocks(0), 4u);
}

TEST(KvIndexerTest, IgnoresRemovalsOfBlocksNeverStored) {
  KvIndexer index;
  index.Stored(0, KvTier::kDevice, std::vector<BlockHash>{1});
  index.Removed(0, KvTier::kDevice, std::vector<BlockHash>{42});
  index.Removed(1, KvTier::kDevice, std::vector<BlockHash>{1});
  index.Removed(0, KvTier::kHost, std::vector<BlockHash>{1});
  EXPECT_EQ(Match(index, {1})[0].device_blocks, 1);
  EXPECT_EQ(index.num_entries(), 1u);
}

TEST(KvIndexerTest, RemovingAWorkerLeavesTheOthers) {
  KvIndexer index;
  index.Stored(0, KvTier::kDevice, std::vector<BlockHash>{1, 2, 3});
  index.Stored(1, KvTier::kDevice, std::vector<BlockHash>{1, 2});
  index.Stored(1, KvTier::kDisk, std::vector<BlockHash>{7});
  index.RemoveWorker(1);
  const auto m = Match(index, {1, 2, 3});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].worker, 0u);
  EXPECT_EQ(index.num_blocks(), 3u);
  EXPECT_EQ(index.num_entries(), 3u);
  EXPECT_EQ(index.worker_blocks(1), 0u);
  // A snapshot rebuilds it.
  index.Stored(1, KvTier::kDevice, std::vector<BlockHash>{1, 2, 3});
  EXPECT_EQ(Match(index, {1, 2, 3}).size(), 2u);
}

TEST(KvIndexerTest, ManyWorkersSharingOnePrefixDiverge) {
  KvIndexer index;
  constexpr int kWorkers = 70;  // Beyond any inline capacity.
  for (WorkerSlot w = 0; w < kWorkers; ++w) {
    std::vector<BlockHash> chain = {100, 101, 102, 1000 + w};
    index.Stored(w, KvTier::kDevice, chain);
  }
  auto m = Match(index, {100, 101, 102, 1005, 5});
  ASSERT_EQ(m.size(), static_cast<size_t>(kWorkers));
  for (const PrefixMatch& p : m) EXPECT_EQ(p.blocks(), p.worker == 5 ? 4 : 3) << p.worker;
  // The scratch is reset between calls.
  m = Match(index, {100});
  for (const PrefixMatch& p : m) EXPECT_EQ(p.blocks(), 1);
}

}  // namespace
}  // namespace tandem::router
