#include "transfer/inproc.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "transfer/ops.h"

namespace tandem::transfer {
namespace {

constexpr uint64_t kChunk = 4 << 20;

// A registered region while it lives. Copies hold `mu` shared for a chunk; deregistration takes
// it exclusively, so it waits for the chunk in flight and no later one starts.
struct Live {
  MemoryRegion region;
  std::unique_ptr<std::byte[]> owned;  // memory the backend allocated for the region
  std::shared_mutex mu;
  bool alive = true;
};

// Every live inproc registration of the process, by id (what a descriptor names).
struct Table {
  std::mutex mu;
  std::unordered_map<uint64_t, std::weak_ptr<Live>> regions;
  uint64_t next_id = 1;
};

Table& TheTable() {
  static Table* table = new Table();
  return *table;
}

std::string Describe(uint64_t id, size_t bytes) {
  return "inproc pid=" + std::to_string(getpid()) + " id=" + std::to_string(id) +
         " bytes=" + std::to_string(bytes);
}

class InprocRegistration final : public Registration {
 public:
  InprocRegistration(uint64_t id, std::shared_ptr<Live> live)
      : id_(id),
        live_(std::move(live)),
        descriptor_{"inproc", Describe(id_, live_->region.bytes)} {}
  ~InprocRegistration() override {
    {
      std::unique_lock lock(live_->mu);  // waits for a chunk in flight
      live_->alive = false;
    }
    Table& t = TheTable();
    std::lock_guard lock(t.mu);
    t.regions.erase(id_);
  }
  const MemoryRegion& region() const override { return live_->region; }
  const RemoteDescriptor& descriptor() const override { return descriptor_; }
  const std::shared_ptr<Live>& live() const { return live_; }

 private:
  const uint64_t id_;
  const std::shared_ptr<Live> live_;
  const RemoteDescriptor descriptor_;
};

class InprocConnection final : public Connection {
 public:
  InprocConnection(std::weak_ptr<Live> live, size_t bytes)
      : live_(std::move(live)), bytes_(bytes) {}
  size_t remote_bytes() const override { return bytes_; }
  const std::weak_ptr<Live>& live() const { return live_; }

 private:
  const std::weak_ptr<Live> live_;
  const size_t bytes_;
};

// One posted list of ops, shared by its handle and the worker copying it.
struct Job {
  std::weak_ptr<Live> local, remote;
  std::vector<TransferOp> ops;
  Direction direction = Direction::kRead;
  std::chrono::steady_clock::time_point deadline;
  std::atomic<bool> cancel{false};

  std::mutex mu;
  std::condition_variable cv;
  TransferState state = TransferState::kPending;
  bool running = false;  // a worker holds it
  Status error;
};

// Copies one chunk with both regions held alive; an error when either is gone.
Status CopyChunk(Job& job, const TransferOp& op, uint64_t at, uint64_t n) {
  const std::shared_ptr<Live> local = job.local.lock();
  const std::shared_ptr<Live> remote = job.remote.lock();
  if (local == nullptr) return CancelledError("inproc: the local registration was dropped");
  if (remote == nullptr) return UnavailableError("inproc: the peer's region is gone");
  std::shared_lock local_lock(local->mu, std::defer_lock);
  std::shared_lock remote_lock(remote->mu, std::defer_lock);
  if (local.get() == remote.get()) {
    local_lock.lock();
  } else {
    std::lock(local_lock, remote_lock);
  }
  if (!local->alive) return CancelledError("inproc: the local registration was dropped");
  if (!remote->alive) return UnavailableError("inproc: the peer's region is gone");
  auto* l = static_cast<std::byte*>(local->region.base) + op.local_offset + at;
  auto* r = static_cast<std::byte*>(remote->region.base) + op.remote_offset + at;
  if (job.direction == Direction::kRead) {
    std::memmove(l, r, n);
  } else {
    std::memmove(r, l, n);
  }
  return OkStatus();
}

Status RunJob(Job& job) {
  for (const TransferOp& op : job.ops) {
    for (uint64_t at = 0; at < op.bytes; at += kChunk) {
      if (job.cancel.load(std::memory_order_relaxed)) return CancelledError("transfer cancelled");
      if (std::chrono::steady_clock::now() > job.deadline) {
        return DeadlineExceededError("inproc: transfer past its deadline");
      }
      if (Status s = CopyChunk(job, op, at, std::min(kChunk, op.bytes - at)); !s.ok()) return s;
    }
  }
  return OkStatus();
}

class InprocTransfer final : public Transfer {
 public:
  explicit InprocTransfer(std::shared_ptr<Job> job) : job_(std::move(job)) {}
  ~InprocTransfer() override {
    Cancel();
    std::unique_lock lock(job_->mu);  // no byte of it moves after this returns
    job_->cv.wait(lock, [&] { return !job_->running; });
  }
  TransferState Poll() override {
    std::lock_guard lock(job_->mu);
    if (job_->state == TransferState::kPending && !job_->running &&
        std::chrono::steady_clock::now() > job_->deadline) {
      // Still queued behind other transfers at its deadline.
      job_->state = TransferState::kError;
      job_->error = DeadlineExceededError("inproc: transfer past its deadline");
    }
    return job_->state;
  }
  Status status() const override {
    std::lock_guard lock(job_->mu);
    return job_->error;
  }
  void Cancel() override {
    job_->cancel = true;
    std::lock_guard lock(job_->mu);
    if (job_->state == TransferState::kPending && !job_->running) {
      job_->state = TransferState::kError;
      job_->error = CancelledError("transfer cancelled");
    }
  }

 private:
  std::shared_ptr<Job> job_;
};

class InprocBackend final : public Backend {
 public:
  explicit InprocBackend(int threads) {
    for (int i = 0; i < std::max(1, threads); ++i) workers_.emplace_back([this] { Work(); });
  }
  ~InprocBackend() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  std::string_view name() const override { return "inproc"; }
  Capabilities capabilities() const override {
    return {.host_memory = true, .device_memory = false, .same_process_only = true,
            .same_node_only = true};
  }

  StatusOr<std::unique_ptr<Registration>> Register(const MemoryRegion& region) override {
    if (region.kind != MemoryKind::kHost) {
      return UnimplementedError("inproc: only host memory");
    }
    if (region.bytes == 0) return InvalidArgumentError("inproc: an empty region");
    auto live = std::make_shared<Live>();
    live->region = region;
    if (region.base == nullptr) {
      live->owned = std::make_unique_for_overwrite<std::byte[]>(region.bytes);
      live->region.base = live->owned.get();
    }
    Table& t = TheTable();
    std::lock_guard lock(t.mu);
    const uint64_t id = t.next_id++;
    t.regions[id] = live;
    return std::unique_ptr<Registration>(new InprocRegistration(id, std::move(live)));
  }

  StatusOr<std::unique_ptr<Connection>> Connect(const RemoteDescriptor& peer) override {
    long pid = 0;
    unsigned long long id = 0, bytes = 0;
    if (peer.backend != "inproc" ||
        std::sscanf(peer.bytes.c_str(), "inproc pid=%ld id=%llu bytes=%llu", &pid, &id, &bytes) !=
            3) {
      return InvalidArgumentError("inproc: not an inproc descriptor: \"" + peer.bytes + "\"");
    }
    if (pid != getpid()) {
      return UnavailableError("inproc: the peer is another process (pid " + std::to_string(pid) +
                              "); inproc connects within one process");
    }
    Table& t = TheTable();
    std::lock_guard lock(t.mu);
    auto it = t.regions.find(id);
    if (it == t.regions.end() || it->second.expired()) {
      return UnavailableError("inproc: the peer's region is gone");
    }
    return std::unique_ptr<Connection>(new InprocConnection(it->second, bytes));
  }

  StatusOr<std::unique_ptr<Transfer>> Post(
      const Registration& local, Connection& peer, std::span<const TransferOp> ops,
      Direction direction, std::chrono::steady_clock::time_point deadline) override {
    const auto* reg = dynamic_cast<const InprocRegistration*>(&local);
    auto* conn = dynamic_cast<InprocConnection*>(&peer);
    if (reg == nullptr || conn == nullptr) {
      return InvalidArgumentError("inproc: a registration or connection of another backend");
    }
    if (Status s = CheckOps("inproc", ops, reg->region().bytes, conn->remote_bytes()); !s.ok()) {
      return s;
    }
    auto job = std::make_shared<Job>();
    job->local = reg->live();
    job->remote = conn->live();
    job->ops.assign(ops.begin(), ops.end());
    job->direction = direction;
    job->deadline = deadline;
    {
      std::lock_guard lock(mu_);
      queue_.push_back(job);
    }
    cv_.notify_one();
    return std::unique_ptr<Transfer>(new InprocTransfer(std::move(job)));
  }

 private:
  void Work() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_ && queue_.empty()) return;
      std::shared_ptr<Job> job = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      {
        std::lock_guard job_lock(job->mu);
        if (job->state == TransferState::kPending) job->running = true;
      }
      if (job->running) {
        const Status result = RunJob(*job);
        std::lock_guard job_lock(job->mu);
        job->state = result.ok() ? TransferState::kDone : TransferState::kError;
        job->error = result;
        job->running = false;
        job->cv.notify_all();
      }
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> MakeInprocBackend(const BackendOptions& options) {
  return std::unique_ptr<Backend>(new InprocBackend(options.worker_threads));
}

}  // namespace tandem::transfer
