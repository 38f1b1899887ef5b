// What is particular to the nccl backend (transfer/nccl.h), between the first two GPUs of one
// process, one backend (one NCCL rank) per device: the refusals of one rank on one GPU, a deadline
// that aborts a communicator with both sides carrying on, and a peer backend destroyed
// mid-transfer. The shared suite (transfer_test, variant nccl_two_gpus) covers the rest. Skips
// with fewer than two CUDA devices.
#include "transfer/nccl.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "tests/transfer/transfer_testing.h"

namespace tandem::transfer {
namespace {

using Clock = std::chrono::steady_clock;
using testing::Bytes;
using testing::Buffer;
using testing::Pattern;
using testing::SlowOps;

// `local` on device 0, registered with backend 0; `remote` on device 1, registered with backend 1;
// backend 0's connection to `remote`.
struct Pair {
  std::unique_ptr<Buffer> local_memory, remote_memory;
  std::unique_ptr<Registration> local, remote;
  std::unique_ptr<Connection> connection;
};

class NcclTransferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const int devices = DeviceCount();
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
    p.local_memory = std::make_unique<Buffer>(MemoryKind::kDevice, Pattern(local_bytes, seed), 0);
    p.remote_memory =
        std::make_unique<Buffer>(MemoryKind::kDevice, Pattern(remote_bytes, seed + 1), 1);
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
  const std::vector<TransferOp> ops = SlowOps(64 << 20);  // a million ops
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
