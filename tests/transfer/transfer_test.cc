// One suite for every transfer backend available here (ARCHITECTURE §3 "Transfer backend"): a
// single block, thousands of scattered blocks, transfers from several threads at once, one
// transfer of 256 MiB, every byte checked; bad ops refused before anything moves; deadlines,
// cancellation, and a peer whose region goes away mid-transfer ending in an error, never a hang.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "tandem/transfer.h"

namespace tandem::transfer {
namespace {

using Clock = std::chrono::steady_clock;
using Bytes = std::vector<std::byte>;

Bytes Pattern(size_t n, uint64_t seed) {
  Bytes b(n);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(b.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return b;
}

// Two registered regions of one backend: `local` and the `remote` one reached through its
// descriptor, as a peer would.
struct Pair {
  Bytes local_bytes, remote_bytes;
  std::unique_ptr<Registration> local, remote;
  std::unique_ptr<Connection> connection;
};

class TransferSuite : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto backend = CreateBackend(GetParam(), {.worker_threads = 2});
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(backend).value();
  }

  Pair Make(size_t local_bytes, size_t remote_bytes, uint64_t seed) {
    Pair p;
    p.local_bytes = Pattern(local_bytes, seed);
    p.remote_bytes = Pattern(remote_bytes, seed + 1);
    auto local = backend_->Register({p.local_bytes.data(), p.local_bytes.size()});
    auto remote = backend_->Register({p.remote_bytes.data(), p.remote_bytes.size()});
    EXPECT_TRUE(local.ok() && remote.ok());
    p.local = std::move(local).value();
    p.remote = std::move(remote).value();
    auto connection = backend_->Connect(p.remote->descriptor());
    EXPECT_TRUE(connection.ok()) << connection.status();
    p.connection = std::move(connection).value();
    return p;
  }

  Status Run(Pair& p, std::span<const TransferOp> ops, Direction direction,
             std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    auto transfer = backend_->Post(*p.local, *p.connection, ops, direction, Clock::now() + timeout);
    if (!transfer.ok()) return transfer.status();
    return (*transfer)->Wait();
  }

  std::unique_ptr<Backend> backend_;
};

TEST_P(TransferSuite, OneBlockEachWay) {
  constexpr size_t kBlock = 2 << 20;
  Pair p = Make(2 * kBlock, 2 * kBlock, 1);
  const Bytes remote_before = p.remote_bytes;
  const TransferOp read{.local_offset = 0, .remote_offset = kBlock, .bytes = kBlock};
  ASSERT_TRUE(Run(p, {&read, 1}, Direction::kRead).ok());
  EXPECT_TRUE(std::equal(p.local_bytes.begin(), p.local_bytes.begin() + kBlock,
                         remote_before.begin() + kBlock));
  const Bytes local_now = p.local_bytes;
  const TransferOp write{.local_offset = kBlock, .remote_offset = 0, .bytes = kBlock};
  ASSERT_TRUE(Run(p, {&write, 1}, Direction::kWrite).ok());
  EXPECT_TRUE(std::equal(p.remote_bytes.begin(), p.remote_bytes.begin() + kBlock,
                         local_now.begin() + kBlock));
  EXPECT_TRUE(std::equal(p.remote_bytes.begin() + kBlock, p.remote_bytes.end(),
                         remote_before.begin() + kBlock))
      << "bytes outside the op moved";
}

TEST_P(TransferSuite, ThousandsOfScatteredBlocks) {
  constexpr size_t kBlock = 4096, kBlocks = 4096;
  Pair p = Make(kBlock * kBlocks, kBlock * kBlocks, 2);
  const Bytes remote_before = p.remote_bytes;
  std::vector<size_t> perm(kBlocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(3));
  std::vector<TransferOp> ops;
  for (size_t i = 0; i < kBlocks; ++i) {
    ops.push_back({.local_offset = i * kBlock, .remote_offset = perm[i] * kBlock, .bytes = kBlock});
  }
  ASSERT_TRUE(Run(p, ops, Direction::kRead).ok());
  for (size_t i = 0; i < kBlocks; ++i) {
    ASSERT_EQ(std::memcmp(p.local_bytes.data() + i * kBlock,
                          remote_before.data() + perm[i] * kBlock, kBlock),
              0)
        << "block " << i;
  }
}

TEST_P(TransferSuite, ConcurrentTransfersFromSeveralThreads) {
  constexpr size_t kSlice = 1 << 20;
  constexpr int kThreads = 8;
  Pair p = Make(kSlice * kThreads, kSlice * kThreads, 4);
  const Bytes local_before = p.local_bytes;
  std::vector<std::thread> threads;
  std::vector<Status> results(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<TransferOp> ops;
      for (size_t at = 0; at < kSlice; at += 64 << 10) {  // 16 ops of 64 KiB per thread
        ops.push_back({.local_offset = t * kSlice + at,
                       .remote_offset = (kThreads - 1 - t) * kSlice + at,
                       .bytes = 64 << 10});
      }
      results[t] = Run(p, ops, Direction::kWrite);
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(results[t].ok()) << results[t];
    EXPECT_EQ(std::memcmp(p.remote_bytes.data() + (kThreads - 1 - t) * kSlice,
                          local_before.data() + t * kSlice, kSlice),
              0)
        << "thread " << t;
  }
}

TEST_P(TransferSuite, OneTransferOf256MiB) {
  constexpr size_t kBytes = 256u << 20;
  Pair p = Make(kBytes, kBytes, 5);
  const TransferOp op{.local_offset = 0, .remote_offset = 0, .bytes = kBytes};
  ASSERT_TRUE(Run(p, {&op, 1}, Direction::kRead).ok());
  EXPECT_EQ(p.local_bytes, p.remote_bytes);
}

TEST_P(TransferSuite, OpsOutsideTheRegionsAreRefusedBeforeAnythingMoves) {
  Pair p = Make(1 << 20, 1 << 20, 6);
  const Bytes before = p.local_bytes;
  const TransferOp ok{.local_offset = 0, .remote_offset = 0, .bytes = 4096};
  const TransferOp past_local{.local_offset = (1 << 20) - 100, .remote_offset = 0, .bytes = 4096};
  const TransferOp past_remote{.local_offset = 0, .remote_offset = 1 << 20, .bytes = 1};
  const TransferOp wraps{.local_offset = ~uint64_t{0} - 10, .remote_offset = 0, .bytes = 20};
  for (const TransferOp& bad : {past_local, past_remote, wraps}) {
    const TransferOp ops[] = {ok, bad};
    EXPECT_EQ(Run(p, ops, Direction::kRead).code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(p.local_bytes, before);
  EXPECT_EQ(backend_->Connect({GetParam(), "garbage"}).status().code(),
            StatusCode::kInvalidArgument);
}

// Many small ops: a transfer long enough (~0.3 s here for 64 MiB) to be caught in flight.
std::vector<TransferOp> SlowOps(size_t bytes) {
  std::vector<TransferOp> ops;
  for (size_t at = 0; at + 64 <= bytes; at += 64) {
    ops.push_back({.local_offset = at, .remote_offset = at, .bytes = 64});
  }
  return ops;
}

TEST_P(TransferSuite, ADeadlineEndsATransferInAnError) {
  Pair p = Make(64 << 20, 64 << 20, 7);
  const std::vector<TransferOp> ops = SlowOps(64 << 20);  // a million ops
  const auto start = Clock::now();
  const Status s = Run(p, ops, Direction::kRead, std::chrono::milliseconds(20));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;  // the ops take ~0.3 s
}

TEST_P(TransferSuite, CancellingOrDroppingATransferStopsIt) {
  Pair p = Make(64 << 20, 64 << 20, 8);
  const std::vector<TransferOp> ops = SlowOps(64 << 20);
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  auto transfer = backend_->Post(*p.local, *p.connection, ops, Direction::kRead, deadline);
  ASSERT_TRUE(transfer.ok());
  (*transfer)->Cancel();
  const Status s = (*transfer)->Wait();
  EXPECT_EQ(s.code(), StatusCode::kCancelled) << s;
  // Dropped while running: the handle's destructor returns once no byte of it moves any more.
  auto dropped = backend_->Post(*p.local, *p.connection, ops, Direction::kRead, deadline);
  ASSERT_TRUE(dropped.ok());
  dropped->reset();
  const Bytes snapshot = p.local_bytes;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(p.local_bytes, snapshot);
}

TEST_P(TransferSuite, APeerWhoseRegionGoesAwayEndsTheTransferInAnError) {
  Pair p = Make(64 << 20, 64 << 20, 9);
  const std::vector<TransferOp> ops = SlowOps(64 << 20);
  auto transfer = backend_->Post(*p.local, *p.connection, ops, Direction::kWrite,
                                 Clock::now() + std::chrono::seconds(30));
  ASSERT_TRUE(transfer.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const RemoteDescriptor gone = p.remote->descriptor();
  p.remote.reset();  // the peer deregisters (or dies) mid-transfer
  const auto start = Clock::now();
  const Status s = (*transfer)->Wait();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  // A new connection to it is refused.
  EXPECT_EQ(backend_->Connect(gone).status().code(), StatusCode::kUnavailable);
}

INSTANTIATE_TEST_SUITE_P(Backends, TransferSuite, ::testing::Values("inproc"),
                         [](const auto& info) { return info.param; });

TEST(TransferRegistryTest, UnknownNamesAreRefusedWithTheKnownOnes) {
  const auto names = AvailableBackends();
  EXPECT_NE(std::find(names.begin(), names.end(), "inproc"), names.end());
  auto missing = CreateBackend("carrier-pigeon");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("inproc"), std::string::npos) << missing.status();
}

}  // namespace
}  // namespace tandem::transfer
