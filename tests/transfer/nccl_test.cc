// The nccl backend (transfer/nccl.h) between the first two GPUs of one process, one backend (one
// NCCL rank) per device: a block each way, thousands of scattered blocks, several threads on one
// connection, one transfer of 256 MiB, every byte checked on the host; bad ops, descriptors and
// regions refused; a deadline, a cancel, and a peer whose region or whole backend goes away
// mid-transfer ending in an error, never a hang. Skips with fewer than two CUDA devices.
#include "transfer/nccl.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "tests/transfer/transfer_testing.h"

namespace tandem::transfer {
namespace {

using Clock = std::chrono::steady_clock;
using testing::Bytes;
using testing::Pattern;

// cudaMalloc'd memory of one device, filled from the host and read back to it.
class DeviceBytes {
 public:
  DeviceBytes(int device, const Bytes& contents) : device_(device), size_(contents.size()) {
    if (cudaSetDevice(device) == cudaSuccess && cudaMalloc(&data_, size_) == cudaSuccess) {
      ok_ = cudaMemcpy(data_, contents.data(), size_, cudaMemcpyHostToDevice) == cudaSuccess;
    }
  }
  ~DeviceBytes() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;

  bool ok() const { return ok_; }
  MemoryRegion region() const { return {data_, size_, MemoryKind::kDevice, device_}; }
  Bytes Contents() const {
    Bytes out(size_);
    EXPECT_EQ(cudaMemcpy(out.data(), data_, size_, cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }

 private:
  const int device_;
  const size_t size_;
  void* data_ = nullptr;
  bool ok_ = false;
};

// `local` on device 0, registered with backend 0; `remote` on device 1, registered with backend 1;
// backend 0's connection to `remote`.
struct Pair {
  std::unique_ptr<DeviceBytes> local_memory, remote_memory;
  std::unique_ptr<Registration> local, remote;
  std::unique_ptr<Connection> connection;
};

// Ops of 256 bytes, in reverse order on the remote side so that none are joined: a transfer
// long enough to be caught in flight (128 groups of 2,048 ops for 64 MiB).
std::vector<TransferOp> SlowOps(size_t bytes) {
  std::vector<TransferOp> ops;
  for (size_t at = 0; at < bytes; at += 256) {
    ops.push_back({.local_offset = at, .remote_offset = bytes - 256 - at, .bytes = 256});
  }
  return ops;
}

class NcclTransferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
    if (devices < 2) {
      GTEST_SKIP() << "the nccl backend needs two CUDA devices, one per NCCL rank; " << devices
                   << " visible";
    }
    for (auto& backend : backends_) {
      auto made = MakeNcclBackend({});
      ASSERT_TRUE(made.ok()) << made.status();
      backend = std::move(made).value();
    }
  }

  Pair Make(size_t local_bytes, size_t remote_bytes, uint64_t seed) {
    Pair p;
    p.local_memory = std::make_unique<DeviceBytes>(0, Pattern(local_bytes, seed));
    p.remote_memory = std::make_unique<DeviceBytes>(1, Pattern(remote_bytes, seed + 1));
    if (!p.local_memory->ok() || !p.remote_memory->ok()) {
      ADD_FAILURE() << "cannot allocate device memory";
      return p;
    }
    auto local = backends_[0]->Register(p.local_memory->region());
    auto remote = backends_[1]->Register(p.remote_memory->region());
    if (!local.ok() || !remote.ok()) {
      ADD_FAILURE() << local.status() << " / " << remote.status();
      return p;
    }
    p.local = std::move(local).value();
    p.remote = std::move(remote).value();
    auto connection = backends_[0]->Connect(p.remote->descriptor());
    if (!connection.ok()) {
      ADD_FAILURE() << connection.status();
      return p;
    }
    p.connection = std::move(connection).value();
    return p;
  }

  Status Run(Pair& p, std::span<const TransferOp> ops, Direction direction,
             std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    auto transfer =
        backends_[0]->Post(*p.local, *p.connection, ops, direction, Clock::now() + timeout);
    if (!transfer.ok()) return transfer.status();
    return (*transfer)->Wait();
  }

  std::unique_ptr<Backend> backends_[2];
};

TEST_F(NcclTransferTest, OneBlockEachWay) {
  constexpr size_t kBlock = 2 << 20;
  Pair p = Make(2 * kBlock, 2 * kBlock, 1);
  ASSERT_NE(p.connection, nullptr);
  const Bytes remote_before = p.remote_memory->Contents();
  const TransferOp read{.local_offset = 0, .remote_offset = kBlock, .bytes = kBlock};
  Status s = Run(p, {&read, 1}, Direction::kRead);
  ASSERT_TRUE(s.ok()) << s;
  const Bytes local_now = p.local_memory->Contents();
  EXPECT_TRUE(
      std::equal(local_now.begin(), local_now.begin() + kBlock, remote_before.begin() + kBlock));
  const TransferOp write{.local_offset = kBlock, .remote_offset = 0, .bytes = kBlock};
  s = Run(p, {&write, 1}, Direction::kWrite);
  ASSERT_TRUE(s.ok()) << s;
  const Bytes remote_now = p.remote_memory->Contents();
  EXPECT_TRUE(
      std::equal(remote_now.begin(), remote_now.begin() + kBlock, local_now.begin() + kBlock));
  EXPECT_TRUE(
      std::equal(remote_now.begin() + kBlock, remote_now.end(), remote_before.begin() + kBlock))
      << "bytes outside the op moved";
}

TEST_F(NcclTransferTest, ThousandsOfScatteredBlocks) {
  constexpr size_t kBlock = 4096, kBlocks = 4096;
  Pair p = Make(kBlock * kBlocks, kBlock * kBlocks, 2);
  ASSERT_NE(p.connection, nullptr);
  const Bytes remote_before = p.remote_memory->Contents();
  std::vector<size_t> perm(kBlocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(3));
  std::vector<TransferOp> ops;
  for (size_t i = 0; i < kBlocks; ++i) {
    ops.push_back({.local_offset = i * kBlock, .remote_offset = perm[i] * kBlock, .bytes = kBlock});
  }
  const Status s = Run(p, ops, Direction::kRead);
  ASSERT_TRUE(s.ok()) << s;
  const Bytes local_now = p.local_memory->Contents();
  for (size_t i = 0; i < kBlocks; ++i) {
    ASSERT_EQ(
        std::memcmp(local_now.data() + i * kBlock, remote_before.data() + perm[i] * kBlock, kBlock),
        0)
        << "block " << i;
  }
}

TEST_F(NcclTransferTest, ConcurrentTransfersFromSeveralThreads) {
  constexpr size_t kSlice = 1 << 20;
  constexpr int kThreads = 8;
  Pair p = Make(kSlice * kThreads, kSlice * kThreads, 4);
  ASSERT_NE(p.connection, nullptr);
  const Bytes local_before = p.local_memory->Contents();
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
  const Bytes remote_now = p.remote_memory->Contents();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(results[t].ok()) << results[t];
    EXPECT_EQ(std::memcmp(remote_now.data() + (kThreads - 1 - t) * kSlice,
                          local_before.data() + t * kSlice, kSlice),
              0)
        << "thread " << t;
  }
}

TEST_F(NcclTransferTest, OneTransferOf256MiB) {
  constexpr size_t kBytes = 256u << 20;
  Pair p = Make(kBytes, kBytes, 5);
  ASSERT_NE(p.connection, nullptr);
  const TransferOp op{.local_offset = 0, .remote_offset = 0, .bytes = kBytes};
  const Status s = Run(p, {&op, 1}, Direction::kRead);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(p.local_memory->Contents(), p.remote_memory->Contents());
}

TEST_F(NcclTransferTest, BadOpsDescriptorsAndRegionsAreRefusedBeforeAnythingMoves) {
  Pair p = Make(1 << 20, 1 << 20, 6);
  ASSERT_NE(p.connection, nullptr);
  const Bytes before = p.local_memory->Contents();
  const TransferOp ok{.local_offset = 0, .remote_offset = 0, .bytes = 4096};
  const TransferOp past_local{.local_offset = (1 << 20) - 100, .remote_offset = 0, .bytes = 4096};
  const TransferOp past_remote{.local_offset = 0, .remote_offset = 1 << 20, .bytes = 1};
  const TransferOp wraps{.local_offset = ~uint64_t{0} - 10, .remote_offset = 0, .bytes = 20};
  for (const TransferOp& bad : {past_local, past_remote, wraps}) {
    const TransferOp ops[] = {ok, bad};
    EXPECT_EQ(Run(p, ops, Direction::kRead).code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(p.local_memory->Contents(), before);
  // Handles of another backend.
  EXPECT_EQ(backends_[1]
                ->Post(*p.remote, *p.connection, {&ok, 1}, Direction::kRead,
                       Clock::now() + std::chrono::seconds(5))
                .status()
                .code(),
            StatusCode::kInvalidArgument);

  RemoteDescriptor truncated = p.remote->descriptor();
  truncated.bytes.pop_back();
  for (const RemoteDescriptor& d : {RemoteDescriptor{"nccl", "garbage"}, truncated,
                                    RemoteDescriptor{"inproc", p.remote->descriptor().bytes}}) {
    EXPECT_EQ(backends_[0]->Connect(d).status().code(), StatusCode::kInvalidArgument);
  }
  // One backend is one rank on one GPU: not its own peer, no second device, no host memory.
  EXPECT_EQ(backends_[1]->Connect(p.remote->descriptor()).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(backends_[0]->Register(p.remote_memory->region()).status().code(),
            StatusCode::kInvalidArgument);
  Bytes host(4096);
  EXPECT_EQ(
      backends_[0]->Register({host.data(), host.size(), MemoryKind::kHost, -1}).status().code(),
      StatusCode::kUnimplemented);
  // A backend without a registration has no GPU yet to put a communicator on.
  auto fresh = MakeNcclBackend({});
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ((*fresh)->Connect(p.remote->descriptor()).status().code(),
            StatusCode::kFailedPrecondition);
}

TEST_F(NcclTransferTest, ADeadlineEndsATransferAndBothSidesCarryOn) {
  Pair p = Make(64 << 20, 64 << 20, 7);
  ASSERT_NE(p.connection, nullptr);
  const std::vector<TransferOp> ops = SlowOps(64 << 20);  // 262,144 ops
  const auto start = Clock::now();
  const Status s = Run(p, ops, Direction::kRead, std::chrono::milliseconds(10));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
  // The aborted connection's communicators are gone on both sides; a new connection works.
  auto again = backends_[0]->Connect(p.remote->descriptor());
  ASSERT_TRUE(again.ok()) << again.status();
  p.connection = std::move(again).value();
  const TransferOp op{.local_offset = 0, .remote_offset = 4096, .bytes = 4096};
  const Status after = Run(p, {&op, 1}, Direction::kRead);
  ASSERT_TRUE(after.ok()) << after;
  EXPECT_EQ(std::memcmp(p.local_memory->Contents().data(),
                        p.remote_memory->Contents().data() + 4096, 4096),
            0);
}

TEST_F(NcclTransferTest, CancellingOrDroppingATransferStopsIt) {
  Pair p = Make(64 << 20, 64 << 20, 8);
  ASSERT_NE(p.connection, nullptr);
  const std::vector<TransferOp> ops = SlowOps(64 << 20);
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  auto transfer = backends_[0]->Post(*p.local, *p.connection, ops, Direction::kRead, deadline);
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  (*transfer)->Cancel();
  const Status s = (*transfer)->Wait();
  EXPECT_EQ(s.code(), StatusCode::kCancelled) << s;
  // Dropped while running: the handle's destructor returns once no byte of it moves any more.
  auto dropped = backends_[0]->Post(*p.local, *p.connection, ops, Direction::kRead, deadline);
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  dropped->reset();
  const Bytes snapshot = p.local_memory->Contents();
  EXPECT_EQ(p.local_memory->Contents(), snapshot);
  // A cancel does not cost the connection.
  const TransferOp op{.local_offset = 0, .remote_offset = 0, .bytes = 4096};
  const Status after = Run(p, {&op, 1}, Direction::kWrite);
  EXPECT_TRUE(after.ok()) << after;
}

TEST_F(NcclTransferTest, APeerWhoseRegionGoesAwayEndsTheTransferInAnError) {
  Pair p = Make(64 << 20, 64 << 20, 9);
  ASSERT_NE(p.connection, nullptr);
  const std::vector<TransferOp> ops = SlowOps(64 << 20);
  auto transfer = backends_[0]->Post(*p.local, *p.connection, ops, Direction::kWrite,
                                     Clock::now() + std::chrono::seconds(30));
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  const RemoteDescriptor gone = p.remote->descriptor();
  p.remote.reset();  // the peer deregisters mid-transfer
  const auto start = Clock::now();
  const Status s = (*transfer)->Wait();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_EQ(backends_[0]->Connect(gone).status().code(), StatusCode::kUnavailable);
}

TEST_F(NcclTransferTest, APeerWhoseBackendIsDestroyedMidTransferEndsItInAnError) {
  Pair p = Make(64 << 20, 64 << 20, 10);
  ASSERT_NE(p.connection, nullptr);
  const std::vector<TransferOp> ops = SlowOps(64 << 20);
  auto transfer = backends_[0]->Post(*p.local, *p.connection, ops, Direction::kRead,
                                     Clock::now() + std::chrono::seconds(30));
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  backends_[1].reset();  // as if its process died; its registration outlives it
  const auto start = Clock::now();
  const Status s = (*transfer)->Wait();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  // The connection is broken for good, and nothing listens at the descriptor's address.
  const TransferOp op{.local_offset = 0, .remote_offset = 0, .bytes = 4096};
  EXPECT_EQ(Run(p, {&op, 1}, Direction::kRead).code(), StatusCode::kUnavailable);
  EXPECT_EQ(backends_[0]->Connect(p.remote->descriptor()).status().code(),
            StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tandem::transfer
