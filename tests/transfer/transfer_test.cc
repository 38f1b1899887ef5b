// One suite for every transfer backend available here (ARCHITECTURE §3 "Transfer backend"), over
// host memory and, where a GPU is visible, device memory: a single block, thousands of scattered
// blocks, transfers from several threads at once, one transfer of 256 MiB, every byte checked;
// bad ops refused before anything moves; deadlines, cancellation, and a peer whose region goes
// away mid-transfer ending in an error, never a hang. Backends that reach other processes also
// move bytes to and from a peer process (tests/transfer/transfer_peer.cc) and see it killed with
// SIGKILL mid-transfer.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "tests/transfer/transfer_testing.h"

extern char** environ;

namespace tandem::transfer {
namespace {

using Clock = std::chrono::steady_clock;
using testing::Buffer;
using testing::Bytes;
using testing::Pattern;
using testing::SlowOps;

struct Variant {
  std::string backend;
  MemoryKind kind = MemoryKind::kHost;
  std::string name;
  int remote_device = 0;  // 1: the remote region on a second GPU (skips with one)
  bool backend_per_side = false;  // nccl: one backend (one rank) per GPU
};

// Two registered regions of one backend: `local` and the `remote` one reached through its
// descriptor, as a peer would.
struct Pair {
  std::unique_ptr<Buffer> local_buffer, remote_buffer;
  std::unique_ptr<Registration> local, remote;
  std::unique_ptr<Connection> connection;
  Bytes LocalBytes() { return local_buffer->Contents(); }
  Bytes RemoteBytes() { return remote_buffer->Contents(); }
};

class TransferSuite : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    if (GetParam().kind == MemoryKind::kDevice && DeviceCount() == 0) {
      GTEST_SKIP() << "no CUDA device visible: the device-memory variant runs on the GPU machine";
    }
    if (GetParam().remote_device > 0 && DeviceCount() <= GetParam().remote_device) {
      GTEST_SKIP() << "one GPU: the two-GPU variant runs on a machine with two";
    }
    auto backend = CreateBackend(GetParam().backend, {.worker_threads = 2});
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(backend).value();
    remote_backend_ = backend_.get();
    if (GetParam().backend_per_side) {
      auto second = CreateBackend(GetParam().backend, {.worker_threads = 2});
      ASSERT_TRUE(second.ok()) << second.status();
      second_backend_ = std::move(second).value();
      remote_backend_ = second_backend_.get();
    }
  }

  Pair Make(size_t local_bytes, size_t remote_bytes, uint64_t seed) {
    Pair p;
    p.local_buffer = std::make_unique<Buffer>(GetParam().kind, Pattern(local_bytes, seed));
    p.remote_buffer = std::make_unique<Buffer>(GetParam().kind, Pattern(remote_bytes, seed + 1),
                                               GetParam().remote_device);
    EXPECT_TRUE(p.local_buffer->ok() && p.remote_buffer->ok());
    auto local = backend_->Register(p.local_buffer->region());
    auto remote = remote_backend_->Register(p.remote_buffer->region());
    EXPECT_TRUE(local.ok()) << local.status();
    EXPECT_TRUE(remote.ok()) << remote.status();
    if (!local.ok() || !remote.ok()) return p;
    p.local = std::move(local).value();
    p.remote = std::move(remote).value();
    auto connection = backend_->Connect(p.remote->descriptor());
    EXPECT_TRUE(connection.ok()) << connection.status();
    if (connection.ok()) p.connection = std::move(connection).value();
    return p;
  }

  Status Run(Pair& p, std::span<const TransferOp> ops, Direction direction,
             std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    if (p.connection == nullptr) return InternalError("no connection");
    auto transfer = backend_->Post(*p.local, *p.connection, ops, direction, Clock::now() + timeout);
    if (!transfer.ok()) return transfer.status();
    return (*transfer)->Wait();
  }

  std::unique_ptr<Backend> backend_;
  // Where remote regions are registered: backend_ itself, or a second backend.
  Backend* remote_backend_ = nullptr;
  std::unique_ptr<Backend> second_backend_;
};

TEST_P(TransferSuite, OneBlockEachWay) {
  constexpr size_t kBlock = 2 << 20;
  Pair p = Make(2 * kBlock, 2 * kBlock, 1);
  const Bytes remote_before = p.RemoteBytes();
  const TransferOp read{.local_offset = 0, .remote_offset = kBlock, .bytes = kBlock};
  ASSERT_TRUE(Run(p, {&read, 1}, Direction::kRead).ok());
  const Bytes local_now = p.LocalBytes();
  EXPECT_TRUE(std::equal(local_now.begin(), local_now.begin() + kBlock,
                         remote_before.begin() + kBlock));
  const TransferOp write{.local_offset = kBlock, .remote_offset = 0, .bytes = kBlock};
  ASSERT_TRUE(Run(p, {&write, 1}, Direction::kWrite).ok());
  const Bytes remote_now = p.RemoteBytes();
  EXPECT_TRUE(std::equal(remote_now.begin(), remote_now.begin() + kBlock,
                         local_now.begin() + kBlock));
  EXPECT_TRUE(std::equal(remote_now.begin() + kBlock, remote_now.end(),
                         remote_before.begin() + kBlock))
      << "bytes outside the op moved";
}

TEST_P(TransferSuite, ThousandsOfScatteredBlocks) {
  constexpr size_t kBlock = 4096, kBlocks = 4096;
  Pair p = Make(kBlock * kBlocks, kBlock * kBlocks, 2);
  const Bytes remote_before = p.RemoteBytes();
  std::vector<size_t> perm(kBlocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(3));
  std::vector<TransferOp> ops;
  for (size_t i = 0; i < kBlocks; ++i) {
    ops.push_back({.local_offset = i * kBlock, .remote_offset = perm[i] * kBlock, .bytes = kBlock});
  }
  ASSERT_TRUE(Run(p, ops, Direction::kRead).ok());
  const Bytes local = p.LocalBytes();
  for (size_t i = 0; i < kBlocks; ++i) {
    ASSERT_EQ(std::memcmp(local.data() + i * kBlock, remote_before.data() + perm[i] * kBlock,
                          kBlock),
              0)
        << "block " << i;
  }
}

TEST_P(TransferSuite, ConcurrentTransfersFromSeveralThreads) {
  constexpr size_t kSlice = 1 << 20;
  constexpr int kThreads = 8;
  Pair p = Make(kSlice * kThreads, kSlice * kThreads, 4);
  const Bytes local_before = p.LocalBytes();
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
  const Bytes remote = p.RemoteBytes();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(results[t].ok()) << results[t];
    EXPECT_EQ(std::memcmp(remote.data() + (kThreads - 1 - t) * kSlice,
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
  EXPECT_TRUE(p.LocalBytes() == p.RemoteBytes());
}

TEST_P(TransferSuite, OpsOutsideTheRegionsAreRefusedBeforeAnythingMoves) {
  Pair p = Make(1 << 20, 1 << 20, 6);
  const Bytes before = p.LocalBytes();
  const TransferOp ok{.local_offset = 0, .remote_offset = 0, .bytes = 4096};
  const TransferOp past_local{.local_offset = (1 << 20) - 100, .remote_offset = 0, .bytes = 4096};
  const TransferOp past_remote{.local_offset = 0, .remote_offset = 1 << 20, .bytes = 1};
  const TransferOp wraps{.local_offset = ~uint64_t{0} - 10, .remote_offset = 0, .bytes = 20};
  for (const TransferOp& bad : {past_local, past_remote, wraps}) {
    const TransferOp ops[] = {ok, bad};
    EXPECT_EQ(Run(p, ops, Direction::kRead).code(), StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(p.LocalBytes() == before);
  EXPECT_EQ(backend_->Connect({GetParam().backend, "garbage"}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_P(TransferSuite, ADeadlineEndsATransferInAnError) {
  Pair p = Make(64 << 20, 64 << 20, 7);
  const std::vector<TransferOp> ops = SlowOps(64 << 20);  // a million ops
  const auto start = Clock::now();
  const Status s = Run(p, ops, Direction::kRead, std::chrono::milliseconds(20));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
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
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  dropped->reset();
  const Bytes snapshot = p.LocalBytes();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(p.LocalBytes() == snapshot);
}

TEST_P(TransferSuite, APeerWhoseRegionGoesAwayEndsTheTransferInAnError) {
  Pair p = Make(64 << 20, 64 << 20, 9);
  const std::vector<TransferOp> ops = SlowOps(64 << 20);
  auto transfer = backend_->Post(*p.local, *p.connection, ops, Direction::kWrite,
                                 Clock::now() + std::chrono::seconds(30));
  ASSERT_TRUE(transfer.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const RemoteDescriptor gone = p.remote->descriptor();
  p.remote.reset();  // the peer deregisters mid-transfer
  const auto start = Clock::now();
  const Status s = (*transfer)->Wait();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  // A new connection to it is refused.
  EXPECT_EQ(backend_->Connect(gone).status().code(), StatusCode::kUnavailable);
}

// ---- with another process ----

// A transfer_peer process holding one region of `bytes` filled with Pattern(bytes, seed).
class PeerProcess {
 public:
  PeerProcess(const Variant& v, size_t bytes, uint64_t seed) {
    int out[2], in[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(in, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    const std::string path = std::string(TANDEM_BINARY_DIR) + "/bin/transfer_peer";
    const std::string kind = v.kind == MemoryKind::kDevice ? "device" : "host";
    const std::string size = std::to_string(bytes), seed_text = std::to_string(seed);
    const std::string device = std::to_string(v.remote_device);
    char* argv[] = {const_cast<char*>(path.c_str()), const_cast<char*>(v.backend.c_str()),
                    const_cast<char*>(kind.c_str()), const_cast<char*>(size.c_str()),
                    const_cast<char*>(seed_text.c_str()), const_cast<char*>(device.c_str()),
                    nullptr};
    const int rc = posix_spawn(&pid_, path.c_str(), &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    if (rc != 0) {
      pid_ = -1;
      close(out[0]);
      return;
    }
    std::string line;
    char c;
    while (read(out[0], &c, 1) == 1 && c != '\n') line += c;
    close(out[0]);
    const size_t space = line.find(' ');
    if (space != std::string::npos) {
      descriptor_ = {line.substr(0, space), wire::FromHex(line.substr(space + 1))};
    }
  }
  ~PeerProcess() {
    if (stdin_ >= 0) close(stdin_);  // the peer exits at end of input
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }
  const RemoteDescriptor& descriptor() const { return descriptor_; }
  void Stop() { kill(pid_, SIGSTOP); }
  void Kill() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  RemoteDescriptor descriptor_;
};

class CrossProcessTest : public TransferSuite {
 protected:
  void SetUp() override {
    TransferSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (backend_->capabilities().same_process_only) {
      GTEST_SKIP() << GetParam().backend << " connects within one process only";
    }
  }

  // Registers local memory of the variant's kind.
  std::unique_ptr<Registration> Local(Buffer& buffer) {
    auto r = backend_->Register(buffer.region());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(r).value() : nullptr;
  }
};

TEST_P(CrossProcessTest, BytesCrossToAnotherProcessAndBack) {
  constexpr size_t kBlock = 2 << 20, kBlocks = 32;
  PeerProcess peer(GetParam(), kBlock * kBlocks, 11);
  ASSERT_FALSE(peer.descriptor().bytes.empty()) << "the peer process did not start";
  auto connection = backend_->Connect(peer.descriptor());
  ASSERT_TRUE(connection.ok()) << connection.status();
  Buffer local(GetParam().kind, Pattern(kBlock * kBlocks, 12));
  auto registration = Local(local);
  ASSERT_NE(registration, nullptr);
  // Read every block of the peer's, in shuffled order.
  std::vector<size_t> perm(kBlocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(13));
  std::vector<TransferOp> ops;
  for (size_t i = 0; i < kBlocks; ++i) {
    ops.push_back({.local_offset = i * kBlock, .remote_offset = perm[i] * kBlock, .bytes = kBlock});
  }
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  auto read = backend_->Post(*registration, **connection, ops, Direction::kRead, deadline);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_TRUE((*read)->Wait().ok()) << (*read)->status();
  const Bytes theirs = Pattern(kBlock * kBlocks, 11);
  Bytes got = local.Contents();
  for (size_t i = 0; i < kBlocks; ++i) {
    ASSERT_EQ(std::memcmp(got.data() + i * kBlock, theirs.data() + perm[i] * kBlock, kBlock), 0)
        << "block " << i;
  }
  // Write a new pattern over the first half of theirs, read it back into our second half.
  Buffer fresh(GetParam().kind, Pattern(kBlock * kBlocks / 2, 14));
  auto fresh_registration = Local(fresh);
  ASSERT_NE(fresh_registration, nullptr);
  const TransferOp write{.local_offset = 0, .remote_offset = 0, .bytes = kBlock * kBlocks / 2};
  auto written = backend_->Post(*fresh_registration, **connection, {&write, 1}, Direction::kWrite,
                                deadline);
  ASSERT_TRUE(written.ok() && (*written)->Wait().ok());
  const TransferOp back{.local_offset = kBlock * kBlocks / 2, .remote_offset = 0,
                        .bytes = kBlock * kBlocks / 2};
  auto reread = backend_->Post(*registration, **connection, {&back, 1}, Direction::kRead, deadline);
  ASSERT_TRUE(reread.ok() && (*reread)->Wait().ok());
  got = local.Contents();
  EXPECT_TRUE(std::equal(got.begin() + kBlock * kBlocks / 2, got.end(),
                         Pattern(kBlock * kBlocks / 2, 14).begin()));
}

TEST_P(CrossProcessTest, APeerKilledMidTransferEndsItInAnErrorWithinTheDeadline) {
  constexpr size_t kBytes = 64 << 20;
  PeerProcess peer(GetParam(), kBytes, 21);
  ASSERT_FALSE(peer.descriptor().bytes.empty()) << "the peer process did not start";
  auto connection = backend_->Connect(peer.descriptor());
  ASSERT_TRUE(connection.ok()) << connection.status();
  Buffer local(GetParam().kind, Pattern(kBytes, 22));
  auto registration = Local(local);
  ASSERT_NE(registration, nullptr);
  // Transfers of a million small reads back to back, one of them in flight when the peer dies
  // (a fast backend finishes one in less than the 20 ms before the kill).
  const std::vector<TransferOp> ops = SlowOps(kBytes);
  constexpr auto kTimeout = std::chrono::seconds(10);
  std::atomic<bool> killed{false};
  Clock::time_point killed_at;
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    killed_at = Clock::now();
    peer.Kill();
    killed = true;
  });
  const auto start = Clock::now();
  Status s;
  int transfers = 0;
  while (s.ok() && Clock::now() - start < kTimeout) {
    auto transfer = backend_->Post(*registration, **connection, ops, Direction::kRead,
                                   Clock::now() + kTimeout);
    s = transfer.ok() ? (*transfer)->Wait() : transfer.status();
    ++transfers;
  }
  const auto ended = Clock::now();
  killer.join();
  ASSERT_TRUE(killed);
  EXPECT_FALSE(s.ok()) << "no transfer failed after the peer died";
  EXPECT_TRUE(s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded)
      << s;
  EXPECT_LE(ended - killed_at, kTimeout) << s << " after " << transfers << " transfers";
  // Later transfers to the dead peer end in an error as well, within their deadline.
  const TransferOp one{.local_offset = 0, .remote_offset = 0, .bytes = 4096};
  auto after = backend_->Post(*registration, **connection, {&one, 1}, Direction::kRead,
                              Clock::now() + std::chrono::seconds(3));
  if (after.ok()) {
    const auto again = Clock::now();
    EXPECT_FALSE((*after)->Wait().ok());
    EXPECT_LE(Clock::now() - again, std::chrono::milliseconds(3500));
  }
}

TEST_P(CrossProcessTest, APeerThatStopsAnsweringEndsATransferAtItsDeadline) {
  constexpr size_t kBytes = 16 << 20;
  PeerProcess peer(GetParam(), kBytes, 31);
  ASSERT_FALSE(peer.descriptor().bytes.empty()) << "the peer process did not start";
  auto connection = backend_->Connect(peer.descriptor());
  ASSERT_TRUE(connection.ok()) << connection.status();
  Buffer local(GetParam().kind, Pattern(kBytes, 32));
  auto registration = Local(local);
  ASSERT_NE(registration, nullptr);
  peer.Stop();  // alive, holding its region, answering nothing
  const std::vector<TransferOp> ops = SlowOps(kBytes);
  constexpr auto kTimeout = std::chrono::seconds(1);
  const auto start = Clock::now();
  auto transfer = backend_->Post(*registration, **connection, ops, Direction::kRead,
                                 start + kTimeout);
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  const Status s = (*transfer)->Wait();
  const auto took = Clock::now() - start;
  peer.Kill();
  // One-sided reads of plain memory may not need the peer at all; if they finished, fine.
  if (!s.ok()) {
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
  }
  EXPECT_LE(took, kTimeout + std::chrono::milliseconds(500)) << s;
}

std::vector<Variant> Variants() {
  std::vector<Variant> out;
  for (const std::string& name : AvailableBackends()) {
    if (name == "nccl") {  // device memory, one GPU per rank; more in tests/transfer/nccl_test.cc
      out.push_back({name, MemoryKind::kDevice, "nccl_two_gpus", /*remote_device=*/1,
                     /*backend_per_side=*/true});
      continue;
    }
    if (name != "cuda_ipc") out.push_back({name, MemoryKind::kHost, name});
    if (name != "inproc") out.push_back({name, MemoryKind::kDevice, name + "_device"});
    if (name == "cuda_ipc" || name == "ucx") {
      out.push_back({name, MemoryKind::kDevice, name + "_two_gpus", /*remote_device=*/1});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Backends, TransferSuite, ::testing::ValuesIn(Variants()),
                         [](const auto& info) { return info.param.name; });
INSTANTIATE_TEST_SUITE_P(Backends, CrossProcessTest, ::testing::ValuesIn(Variants()),
                         [](const auto& info) { return info.param.name; });

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
