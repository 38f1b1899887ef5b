// KvEventLog: ids, the ring, the snapshot a late subscriber gets, waiting; and the events the
// device pool (BlockPool) reports.
#include "kvcache/kv_events.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "kvcache/block_pool.h"

namespace tandem::kvcache {
namespace {

using Kind = KvEvent::Kind;

std::vector<BlockHash> Sorted(std::vector<BlockHash> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(KvEventLogTest, NumbersEventsFromOneAndReadsFromAnyKeptId) {
  KvEventLog log(16);
  EXPECT_EQ(log.last_id(), 0u);
  EXPECT_TRUE(log.Read(1).events.empty());
  const BlockHash chain[] = {10, 11};
  log.Stored(KvTier::kDevice, std::nullopt, chain);
  log.Stored(KvTier::kHost, 10, {&chain[1], 1});
  log.Removed(KvTier::kDevice, {&chain[1], 1});
  log.Cleared();
  EXPECT_EQ(log.last_id(), 4u);

  const auto all = log.Read(1);
  EXPECT_FALSE(all.snapshot.has_value());
  ASSERT_EQ(all.events.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(all.events[i].id, i + 1);
  EXPECT_EQ(all.events[0], (KvEvent{.id = 1,
                                   .kind = Kind::kStored,
                                   .tier = KvTier::kDevice,
                                   .parent_hash = std::nullopt,
                                   .block_hashes = {10, 11}}));
  EXPECT_EQ(all.events[1].parent_hash, std::optional<BlockHash>(10));
  EXPECT_EQ(all.events[1].tier, KvTier::kHost);
  EXPECT_EQ(all.events[2].kind, Kind::kRemoved);
  EXPECT_EQ(all.events[3].kind, Kind::kCleared);

  const auto tail = log.Read(3, 1);
  ASSERT_EQ(tail.events.size(), 1u);
  EXPECT_EQ(tail.events[0].id, 3u);
  EXPECT_TRUE(log.Read(5).events.empty());
  EXPECT_TRUE(log.Read(99).events.empty());
}

TEST(KvEventLogTest, ASubscriberWhoseIdLeftTheRingGetsTheSnapshot) {
  KvEventLog log(4);
  for (BlockHash h = 1; h <= 6; ++h) log.Stored(KvTier::kDevice, std::nullopt, {&h, 1});
  const BlockHash h3 = 3, h1 = 1;
  log.Stored(KvTier::kDisk, std::nullopt, {&h3, 1});
  log.Removed(KvTier::kDevice, {&h1, 1});
  log.Removed(KvTier::kDevice, {&h3, 1});
  // Events 1..9; the ring keeps 6..9.
  const auto late = log.Read(2);
  ASSERT_TRUE(late.snapshot.has_value());
  EXPECT_TRUE(late.events.empty());
  EXPECT_EQ(late.snapshot->as_of_id, 9u);
  EXPECT_EQ(Sorted(late.snapshot->stored[0]), (std::vector<BlockHash>{2, 4, 5, 6}));
  EXPECT_TRUE(late.snapshot->stored[1].empty());
  EXPECT_EQ(late.snapshot->stored[2], (std::vector<BlockHash>{3}));

  const auto kept = log.Read(6);
  EXPECT_FALSE(kept.snapshot.has_value());
  ASSERT_EQ(kept.events.size(), 4u);
  EXPECT_EQ(kept.events.front().id, 6u);

  // Replaying the snapshot and then the events after it gives the same state as the log's.
  log.Cleared();
  const auto after = log.Read(10);
  ASSERT_EQ(after.events.size(), 1u);
  EXPECT_EQ(after.events[0].kind, Kind::kCleared);
  const auto empty = log.TakeSnapshot();
  for (const auto& tier : empty.stored) EXPECT_TRUE(tier.empty());
}

TEST(KvEventLogTest, WaitForEventsWakesOnAppendAndTimesOut) {
  KvEventLog log;
  EXPECT_FALSE(log.WaitForEvents(0, std::chrono::milliseconds(20)));
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    const BlockHash h = 7;
    log.Stored(KvTier::kHost, std::nullopt, {&h, 1});
  });
  EXPECT_TRUE(log.WaitForEvents(0, std::chrono::seconds(10)));
  writer.join();
  EXPECT_FALSE(log.WaitForEvents(1, std::chrono::milliseconds(1)));
}

// Issue 16: what wakes the worker's SubscribeKvEvents streams.
TEST(KvEventLogTest, ListenersRunAfterEachAppendUntilRemoved) {
  KvEventLog log;
  uint64_t seen_last_id = 0;
  int calls = 0;
  KvEventListener listener(&log, [&] {
    ++calls;
    seen_last_id = log.last_id();  // The event is readable, and the read lock is free.
  });
  const BlockHash h = 7;
  log.Stored(KvTier::kDevice, std::nullopt, {&h, 1});
  log.Removed(KvTier::kDevice, {&h, 1});
  log.Cleared();
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(seen_last_id, 3u);
  log.Stored(KvTier::kDevice, std::nullopt, {});  // Nothing stored: no event, no call.
  EXPECT_EQ(calls, 3);

  int other_calls = 0;
  KvEventListener other(&log, [&] { ++other_calls; });
  listener.Reset();
  log.Cleared();
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(other_calls, 1);
  KvEventListener moved = std::move(other);
  log.Cleared();
  EXPECT_EQ(other_calls, 2);
}

TEST(BlockPoolEventsTest, RegisterEvictClearAndResetAreReported) {
  KvEventLog log;
  ManualClock clock;
  BlockPool pool(BlockPoolOptions{.num_blocks = 2}, nullptr, &clock, &log);
  auto blocks = pool.Allocate(2);
  ASSERT_TRUE(blocks.ok());
  pool.Register((*blocks)[0], 100);
  pool.Register((*blocks)[1], 101, 100);
  pool.Register((*blocks)[1], 101, 100);  // again: no event
  pool.Release(*blocks);                  // both cached; 101 is released first
  clock.Advance(1);
  auto one = pool.Allocate(1);  // evicts the least recently freed: 101
  ASSERT_TRUE(one.ok());
  pool.ClearCache();  // 100 goes
  pool.Release(*one);
  pool.Reset();

  const auto read = log.Read(1);
  ASSERT_EQ(read.events.size(), 5u);
  EXPECT_EQ(read.events[0], (KvEvent{.id = 1,
                                    .kind = Kind::kStored,
                                    .tier = KvTier::kDevice,
                                    .parent_hash = std::nullopt,
                                    .block_hashes = {100}}));
  EXPECT_EQ(read.events[1].parent_hash, std::optional<BlockHash>(100));
  EXPECT_EQ(read.events[1].block_hashes, (std::vector<BlockHash>{101}));
  EXPECT_EQ(read.events[2].kind, Kind::kRemoved);
  EXPECT_EQ(read.events[2].block_hashes, (std::vector<BlockHash>{101}));
  EXPECT_EQ(read.events[3].kind, Kind::kRemoved);
  EXPECT_EQ(read.events[3].block_hashes, (std::vector<BlockHash>{100}));
  EXPECT_EQ(read.events[4].kind, Kind::kCleared);
}

TEST(BlockPoolEventsTest, ResetEmptiesThePoolEvenWithHeldBlocks) {
  KvEventLog log;
  BlockPool pool(BlockPoolOptions{.num_blocks = 4}, nullptr, nullptr, &log);
  auto blocks = pool.Allocate(3);
  ASSERT_TRUE(blocks.ok());
  pool.Register((*blocks)[0], 1);
  pool.Register((*blocks)[1], 2, 1);
  pool.Release(std::span<const BlockId>(*blocks).first(2));
  pool.Reset();
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_EQ(pool.CountPrefix(std::vector<BlockHash>{1, 2}), 0);
  for (int b = 0; b < 4; ++b) EXPECT_EQ(pool.ref_count(BlockId(b)), 0);
  auto again = pool.Allocate(4);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(log.Read(log.last_id()).events.at(0).kind, Kind::kCleared);
  for (const auto& tier : log.TakeSnapshot().stored) EXPECT_TRUE(tier.empty());
}

}  // namespace
}  // namespace tandem::kvcache
