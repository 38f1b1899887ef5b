// One suite for every tier's BlockStore (G2 host, G3 disk), then the disk tier's own cases:
// admission, a corrupted slot, failed writes and reads, a full disk, batched reads.
#include "kvcache/block_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kvcache/disk_store.h"
#include "kvcache/host_store.h"

namespace tandem::kvcache {
namespace {

using Kind = KvEvent::Kind;
using Bytes = std::vector<std::byte>;

// Blocks of an odd size (not a multiple of 4 KiB), so the disk slots' padding is exercised.
constexpr size_t kBlockBytes = 3 * 4096 + 100;

Bytes BlockData(BlockHash hash, size_t bytes = kBlockBytes) {
  Bytes data(bytes);
  std::mt19937_64 rng(hash);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  return data;
}

// A file under the build tree (a real file system: O_DIRECT needs one), removed afterwards.
std::string TempPath(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(TANDEM_BINARY_DIR) / "kvcache_test";
  std::filesystem::create_directories(dir);
  return (dir / (name + "-" + std::to_string(getpid()))).string();
}

struct StoreFactory {
  std::string name;
  std::function<std::unique_ptr<BlockStore>(int capacity, const Clock*, KvEventSink*)> make;
};

std::unique_ptr<BlockStore> MakeHost(int capacity, const Clock* clock, KvEventSink* events) {
  auto store = HostStore::Create({.block_bytes = kBlockBytes, .capacity_blocks = capacity}, nullptr,
                                 clock, events);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(store).value() : nullptr;
}

std::unique_ptr<BlockStore> MakeDisk(int capacity, const Clock* clock, KvEventSink* events) {
  auto store = DiskStore::Create({.path = TempPath("suite"),
                                  .block_bytes = kBlockBytes,
                                  .capacity_blocks = capacity,
                                  .admit_after_reuses = 0},
                                 clock, events);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(store).value() : nullptr;
}

class BlockStoreSuite : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void TearDown() override { std::filesystem::remove(TempPath("suite")); }
  std::unique_ptr<BlockStore> Make(int capacity) {
    return GetParam().make(capacity, &clock_, &log_);
  }
  ManualClock clock_;
  KvEventLog log_;
};

TEST_P(BlockStoreSuite, PutThenGetReturnsTheSameBytes) {
  auto store = Make(8);
  ASSERT_NE(store, nullptr);
  for (BlockHash h = 1; h <= 8; ++h) {
    auto put = store->Put(h, h > 1 ? std::optional<BlockHash>(h - 1) : std::nullopt, BlockData(h));
    ASSERT_TRUE(put.ok()) << put.status();
    EXPECT_EQ(*put, PutResult::kStored);
  }
  EXPECT_EQ(store->size(), 8);
  for (BlockHash h = 8; h >= 1; --h) {
    Bytes out(kBlockBytes);
    ASSERT_TRUE(store->Get(h, out).ok());
    EXPECT_EQ(out, BlockData(h)) << h;
  }
  const BlockStoreStats s = store->stats();
  EXPECT_EQ(s.hits, 8u);
  EXPECT_EQ(s.stored, 8u);
  EXPECT_EQ(s.bytes_in, 8 * kBlockBytes);
  EXPECT_EQ(s.bytes_out, 8 * kBlockBytes);
  EXPECT_EQ(store->CountPrefix(std::vector<BlockHash>{1, 2, 3, 99, 4}), 3);
}

TEST_P(BlockStoreSuite, MissesAndWrongSizesAreErrorsNotData) {
  auto store = Make(2);
  ASSERT_NE(store, nullptr);
  Bytes out(kBlockBytes, std::byte{0x5a});
  EXPECT_EQ(store->Get(42, out).code(), StatusCode::kNotFound);
  EXPECT_EQ(out, Bytes(kBlockBytes, std::byte{0x5a}));
  EXPECT_EQ(store->stats().misses, 1u);
  EXPECT_EQ(store->Put(1, std::nullopt, BlockData(1, kBlockBytes - 1)).status().code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(store->Put(1, std::nullopt, BlockData(1)).ok());
  Bytes small(kBlockBytes - 1);
  EXPECT_EQ(store->Get(1, small).code(), StatusCode::kInvalidArgument);
}

TEST_P(BlockStoreSuite, EvictsTheLeastRecentlyUsedAndReportsIt) {
  auto store = Make(3);
  ASSERT_NE(store, nullptr);
  for (BlockHash h : {1, 2, 3}) {
    ASSERT_TRUE(store->Put(h, std::nullopt, BlockData(h)).ok());
    clock_.Advance(10);
  }
  Bytes out(kBlockBytes);
  ASSERT_TRUE(store->Get(1, out).ok());  // 1 is now the most recent
  clock_.Advance(10);
  auto again = store->Put(2, std::nullopt, BlockData(2));  // present: refreshes 2
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, PutResult::kPresent);
  clock_.Advance(10);
  ASSERT_TRUE(store->Put(4, std::nullopt, BlockData(4)).ok());  // evicts 3
  EXPECT_FALSE(store->Contains(3));
  clock_.Advance(10);
  ASSERT_TRUE(store->Put(5, std::nullopt, BlockData(5)).ok());  // evicts 1
  EXPECT_FALSE(store->Contains(1));
  for (BlockHash h : {2, 4, 5}) {
    ASSERT_TRUE(store->Get(h, out).ok());
    EXPECT_EQ(out, BlockData(h));
  }
  EXPECT_EQ(store->stats().evicted, 2u);

  const auto events = log_.Read(1).events;
  std::vector<std::pair<Kind, BlockHash>> seen;
  for (const KvEvent& e : events) {
    EXPECT_EQ(e.tier, store->tier());
    for (BlockHash h : e.block_hashes) seen.emplace_back(e.kind, h);
  }
  const std::vector<std::pair<Kind, BlockHash>> expected = {
      {Kind::kStored, 1},  {Kind::kStored, 2}, {Kind::kStored, 3}, {Kind::kRemoved, 3},
      {Kind::kStored, 4},  {Kind::kRemoved, 1}, {Kind::kStored, 5}};
  EXPECT_EQ(seen, expected);
}

TEST_P(BlockStoreSuite, RemoveAndClearDropBlocksWithEvents) {
  auto store = Make(4);
  ASSERT_NE(store, nullptr);
  for (BlockHash h : {1, 2, 3}) ASSERT_TRUE(store->Put(h, std::nullopt, BlockData(h)).ok());
  store->Remove(2);
  store->Remove(77);  // absent: nothing
  EXPECT_FALSE(store->Contains(2));
  EXPECT_EQ(store->size(), 2);
  store->Clear();
  EXPECT_EQ(store->size(), 0);
  for (const auto& tier : log_.TakeSnapshot().stored) EXPECT_TRUE(tier.empty());
  // Slots freed by Remove and Clear are used again.
  for (BlockHash h : {5, 6, 7, 8}) ASSERT_TRUE(store->Put(h, std::nullopt, BlockData(h)).ok());
  EXPECT_EQ(store->stats().evicted, 0u);
  Bytes out(kBlockBytes);
  ASSERT_TRUE(store->Get(8, out).ok());
  EXPECT_EQ(out, BlockData(8));
}

TEST_P(BlockStoreSuite, ThreadsPuttingAndGettingSeeOnlyWholeCorrectBlocks) {
  auto store = Make(16);
  ASSERT_NE(store, nullptr);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Bytes out(kBlockBytes);
      for (int i = 0; i < 60; ++i) {
        const BlockHash h = 1 + static_cast<BlockHash>((t * 7 + i) % 24);
        if (i % 3 == 0) {
          if (!store->Put(h, std::nullopt, BlockData(h)).ok()) ++bad;
        } else if (store->Get(h, out).ok() && out != BlockData(h)) {
          ++bad;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LE(store->size(), 16);
}

TEST_P(BlockStoreSuite, ANewStoreStartsEmpty) {
  {
    auto store = Make(4);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put(1, std::nullopt, BlockData(1)).ok());
  }
  auto restarted = Make(4);  // same file for the disk tier
  ASSERT_NE(restarted, nullptr);
  EXPECT_EQ(restarted->size(), 0);
  Bytes out(kBlockBytes);
  EXPECT_EQ(restarted->Get(1, out).code(), StatusCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Tiers, BlockStoreSuite,
                         ::testing::Values(StoreFactory{"host", MakeHost},
                                           StoreFactory{"disk", MakeDisk}),
                         [](const auto& info) { return info.param.name; });

// ---- The host tier -------------------------------------------------------------------------

TEST(HostStoreTest, InPlacePutsAreInvisibleUntilCommittedAndCanBeAbandoned) {
  KvEventLog log;
  auto created = HostStore::Create({.block_bytes = kBlockBytes, .capacity_blocks = 2}, nullptr,
                                   nullptr, &log);
  ASSERT_TRUE(created.ok());
  HostStore& store = **created;
  std::byte* slot = store.BeginPut(1);
  ASSERT_NE(slot, nullptr);
  EXPECT_EQ(store.BeginPut(1), nullptr) << "a hash being put is not reserved twice";
  EXPECT_FALSE(store.Contains(1));
  const Bytes data = BlockData(1);
  std::memcpy(slot, data.data(), data.size());
  store.CommitPut(1, std::nullopt);
  EXPECT_TRUE(store.Contains(1));
  EXPECT_EQ(store.BeginPut(1), nullptr) << "held: refreshed, nothing to copy";
  const std::byte* found = store.Find(1);
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(Bytes(found, found + kBlockBytes), data);
  EXPECT_EQ(store.Find(2), nullptr);
  EXPECT_EQ(store.stats().hits, 1u);
  EXPECT_EQ(store.stats().misses, 1u);

  ASSERT_NE(store.BeginPut(2), nullptr);
  store.AbortPut(2);  // the slot comes back: two more blocks fit before anything is evicted
  ASSERT_TRUE(store.Put(3, 1, BlockData(3)).ok());
  EXPECT_EQ(store.stats().evicted, 0u);
  EXPECT_EQ(log.last_id(), 2u) << "Stored 1, Stored 3; nothing for the abandoned put";
}

// G2's evictions reach the hook with their bytes intact (how G3 takes them).
TEST(HostStoreTest, EvictionHookSeesTheEvictedBlock) {
  auto created = HostStore::Create({.block_bytes = kBlockBytes, .capacity_blocks = 1});
  ASSERT_TRUE(created.ok());
  std::vector<std::pair<BlockHash, Bytes>> evicted;
  (*created)->set_evict_hook(
      [&](BlockHash h, std::optional<BlockHash> parent, std::span<const std::byte> data) {
        EXPECT_EQ(parent, std::optional<BlockHash>(7));
        evicted.emplace_back(h, Bytes(data.begin(), data.end()));
      });
  ASSERT_TRUE((*created)->Put(1, 7, BlockData(1)).ok());
  ASSERT_TRUE((*created)->Put(2, 1, BlockData(2)).ok());
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(evicted[0].first, 1u);
  EXPECT_EQ(evicted[0].second, BlockData(1));
}

// ---- The disk tier -------------------------------------------------------------------------

// The real file with failures injected: writes fail (with `write_errno`) once `writes_ok` have
// succeeded, reads likewise.
class FaultyIo final : public DiskIo {
 public:
  explicit FaultyIo(std::unique_ptr<DiskIo> inner) : inner_(std::move(inner)) {}
  std::vector<int64_t> Read(std::span<const Op> ops) override {
    return Inject(inner_->Read(ops), &reads_ok, read_errno);
  }
  std::vector<int64_t> Write(std::span<const Op> ops) override {
    return Inject(inner_->Write(ops), &writes_ok, write_errno);
  }
  int writes_ok = 1 << 30, write_errno = EIO;
  int reads_ok = 1 << 30, read_errno = EIO;

 private:
  static std::vector<int64_t> Inject(std::vector<int64_t> results, int* ok, int err) {
    for (auto& r : results) {
      if (*ok > 0) {
        --*ok;
      } else {
        r = -err;
      }
    }
    return results;
  }
  std::unique_ptr<DiskIo> inner_;
};

class DiskStoreTest : public ::testing::Test {
 protected:
  void TearDown() override { std::filesystem::remove(path_); }

  std::unique_ptr<DiskStore> Make(int capacity, int admit_after_reuses = 0,
                                  FaultyIo** faults = nullptr) {
    std::unique_ptr<DiskIo> io;
    if (faults != nullptr) {
      auto file = OpenDiskFile(path_, DiskStore::SlotBytes(kBlockBytes) * capacity, 8);
      EXPECT_TRUE(file.ok()) << file.status();
      if (!file.ok()) return nullptr;
      auto faulty = std::make_unique<FaultyIo>(std::move(file).value());
      *faults = faulty.get();
      io = std::move(faulty);
    }
    auto store = DiskStore::Create({.path = path_,
                                    .block_bytes = kBlockBytes,
                                    .capacity_blocks = capacity,
                                    .queue_depth = 8,
                                    .admit_after_reuses = admit_after_reuses},
                                   &clock_, &log_, std::move(io));
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  const std::string path_ = TempPath("disk");
  ManualClock clock_;
  KvEventLog log_;
};

TEST_F(DiskStoreTest, WritesOnlyBlocksReusedOften) {
  auto store = Make(4, /*admit_after_reuses=*/2);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->Put(1, std::nullopt, BlockData(1)), PutResult::kNotAdmitted);
  store->NoteReuse(1);
  EXPECT_EQ(*store->Put(1, std::nullopt, BlockData(1)), PutResult::kNotAdmitted);
  store->NoteReuse(1);
  EXPECT_EQ(*store->Put(1, std::nullopt, BlockData(1)), PutResult::kStored);
  EXPECT_EQ(store->stats().bytes_in, kBlockBytes);
  EXPECT_EQ(log_.last_id(), 1u);  // only the stored block is an event
}

TEST_F(DiskStoreTest, ACorruptedSlotIsAMissNeverData) {
  auto store = Make(4);
  ASSERT_NE(store, nullptr);
  for (BlockHash h : {1, 2, 3}) ASSERT_TRUE(store->Put(h, std::nullopt, BlockData(h)).ok());
  // Flip bytes inside block 2's data on disk (a buffered write: direct reads see it).
  const int slot = store->SlotOf(2);
  ASSERT_GE(slot, 0);
  const int fd = open(path_.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const char junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_EQ(pwrite(fd, junk, sizeof junk,
                   static_cast<off_t>(slot * store->slot_bytes() + 64 + 1000)),
            8);
  ASSERT_EQ(fsync(fd), 0);
  close(fd);

  Bytes out(kBlockBytes, std::byte{0});
  EXPECT_EQ(store->Get(2, out).code(), StatusCode::kNotFound);
  EXPECT_EQ(out, Bytes(kBlockBytes, std::byte{0}));  // nothing was copied out
  EXPECT_FALSE(store->Contains(2));
  EXPECT_EQ(store->stats().corrupt, 1u);
  EXPECT_FALSE(store->stats().disabled);
  for (BlockHash h : {1, 3}) {  // the rest is intact
    ASSERT_TRUE(store->Get(h, out).ok());
    EXPECT_EQ(out, BlockData(h));
  }
  const auto events = log_.Read(1).events;
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[3].kind, Kind::kRemoved);
  EXPECT_EQ(events[3].block_hashes, (std::vector<BlockHash>{2}));
}

TEST_F(DiskStoreTest, AFailedWriteDisablesTheTierAndOtherTiersKeepTheirBlocks) {
  FaultyIo* faults = nullptr;
  auto disk = Make(8, 0, &faults);
  ASSERT_NE(disk, nullptr);
  auto host = HostStore::Create({.block_bytes = kBlockBytes, .capacity_blocks = 8}, nullptr,
                                &clock_, &log_);
  ASSERT_TRUE(host.ok());
  for (BlockHash h : {1, 2}) {
    ASSERT_TRUE(disk->Put(h, std::nullopt, BlockData(h)).ok());
    ASSERT_TRUE((*host)->Put(h, std::nullopt, BlockData(h)).ok());
  }
  faults->writes_ok = 0;
  EXPECT_EQ(*disk->Put(3, std::nullopt, BlockData(3)), PutResult::kDisabled);
  EXPECT_TRUE(disk->stats().disabled);
  EXPECT_EQ(disk->stats().errors, 1u);
  EXPECT_EQ(disk->size(), 0);
  Bytes out(kBlockBytes);
  EXPECT_EQ(disk->Get(1, out).code(), StatusCode::kNotFound);
  EXPECT_EQ(*disk->Put(4, std::nullopt, BlockData(4)), PutResult::kDisabled);
  for (BlockHash h : {1, 2}) {
    ASSERT_TRUE((*host)->Get(h, out).ok());
    EXPECT_EQ(out, BlockData(h));
  }
  // Subscribers learn that the disk tier holds nothing; the host tier's blocks stay.
  const auto snapshot = log_.TakeSnapshot();
  EXPECT_TRUE(snapshot.stored[static_cast<int>(KvTier::kDisk) - 1].empty());
  EXPECT_EQ(snapshot.stored[static_cast<int>(KvTier::kHost) - 1].size(), 2u);
}

TEST_F(DiskStoreTest, AFailedReadDisablesTheTierAndIsAMiss) {
  FaultyIo* faults = nullptr;
  auto disk = Make(4, 0, &faults);
  ASSERT_NE(disk, nullptr);
  ASSERT_TRUE(disk->Put(1, std::nullopt, BlockData(1)).ok());
  faults->reads_ok = 0;
  Bytes out(kBlockBytes, std::byte{0});
  EXPECT_EQ(disk->Get(1, out).code(), StatusCode::kNotFound);
  EXPECT_EQ(out, Bytes(kBlockBytes, std::byte{0}));
  EXPECT_TRUE(disk->stats().disabled);
  EXPECT_EQ(disk->size(), 0);
}

TEST_F(DiskStoreTest, AFullDiskDisablesTheTier) {
  FaultyIo* faults = nullptr;
  auto disk = Make(4, 0, &faults);
  ASSERT_NE(disk, nullptr);
  faults->writes_ok = 1;
  faults->write_errno = ENOSPC;
  EXPECT_EQ(*disk->Put(1, std::nullopt, BlockData(1)), PutResult::kStored);
  EXPECT_EQ(*disk->Put(2, std::nullopt, BlockData(2)), PutResult::kDisabled);
  EXPECT_TRUE(disk->stats().disabled);
}

TEST_F(DiskStoreTest, AFileLargerThanTheDiskIsRefusedAtCreation) {
  auto store = DiskStore::Create({.path = path_,
                                  .block_bytes = size_t{1} << 30,
                                  .capacity_blocks = 1 << 20});  // 1 PiB
  EXPECT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status();
}

TEST_F(DiskStoreTest, ManyBlocksReadInOneBatch) {
  auto store = Make(64);
  ASSERT_NE(store, nullptr);
  std::vector<BlockHash> hashes;
  for (BlockHash h = 1; h <= 40; ++h) {
    ASSERT_TRUE(store->Put(h, std::nullopt, BlockData(h)).ok());
    hashes.push_back(h);
  }
  hashes.push_back(999);  // a miss in the middle of the batch
  std::swap(hashes[10], hashes.back());
  std::vector<Bytes> outs(hashes.size(), Bytes(kBlockBytes));
  std::vector<std::span<std::byte>> views(outs.begin(), outs.end());
  const std::vector<Status> results = store->GetMany(hashes, views);
  ASSERT_EQ(results.size(), hashes.size());
  for (size_t i = 0; i < hashes.size(); ++i) {
    if (hashes[i] == 999) {
      EXPECT_EQ(results[i].code(), StatusCode::kNotFound);
    } else {
      ASSERT_TRUE(results[i].ok()) << results[i];
      EXPECT_EQ(outs[i], BlockData(hashes[i])) << hashes[i];
    }
  }
}

}  // namespace
}  // namespace tandem::kvcache
