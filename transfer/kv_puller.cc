#include "transfer/kv_puller.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

namespace tandem::transfer {
namespace {

using Clock = std::chrono::steady_clock;

struct Job {
  KvSource source;
  std::vector<int32_t> remote;
  std::vector<int32_t> local;
  std::function<void(const KvPullResult&)> done;
  Clock::time_point start = Clock::now();
  uint64_t bytes = 0;

  // The puller thread's.
  std::shared_ptr<Connection> connection;
  std::unique_ptr<Transfer> transfer;
  bool simulated = false;
  Clock::time_point simulated_until;

  // Guarded by Shared::mu.
  enum class Phase { kQueued, kMoving, kReleasing, kFinished };
  Phase phase = Phase::kQueued;
  bool cancelled = false;
};

// What the puller thread, the pull handles and the release callbacks share.
struct Shared {
  std::mutex mu;
  std::condition_variable wake;      // A job queued or cancelled, or stop.
  std::condition_variable finished;  // A job reached kFinished.
  std::deque<std::shared_ptr<Job>> queued;
  bool stop = false;

  // Ends a job once: `done` runs (under mu, so that a cancel that returns knows it has run or
  // never will) unless the job was cancelled.
  void Finish(Job& job, const Status& status) {
    std::lock_guard<std::mutex> lock(mu);
    if (job.phase == Job::Phase::kFinished) return;
    job.phase = Job::Phase::kFinished;
    if (!job.cancelled && job.done) {
      const double seconds = std::chrono::duration<double>(Clock::now() - job.start).count();
      job.done(KvPullResult{status, status.ok() ? job.bytes : 0, seconds});
    }
    job.done = nullptr;
    finished.notify_all();
  }
};

class Puller final : public KvPuller {
 public:
  explicit Puller(KvPullerOptions options)
      : options_(std::move(options)), shared_(std::make_shared<Shared>()) {
    thread_ = std::thread([this] { Run(); });
  }

  ~Puller() override {
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      shared_->stop = true;
    }
    shared_->wake.notify_all();
    thread_.join();
  }

  std::unique_ptr<KvPull> Start(const KvSource& source, std::span<const int32_t> remote,
                                std::span<const int32_t> local,
                                std::function<void(const KvPullResult&)> done) override {
    auto job = std::make_shared<Job>();
    job->source = source;
    job->remote.assign(remote.begin(), remote.end());
    job->local.assign(local.begin(), local.end());
    job->done = std::move(done);
    job->bytes = static_cast<uint64_t>(job->local.size()) * options_.block_bytes;
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      shared_->queued.push_back(job);
    }
    shared_->wake.notify_all();
    return std::make_unique<Handle>(shared_, job);
  }

  void Release(const KvSource& source) override {
    if (options_.release) options_.release(source, {}, nullptr);
  }

 private:
  class Handle final : public KvPull {
   public:
    Handle(std::shared_ptr<Shared> shared, std::shared_ptr<Job> job)
        : shared_(std::move(shared)), job_(std::move(job)) {}
    ~Handle() override {
      std::unique_lock<std::mutex> lock(shared_->mu);
      job_->cancelled = true;
      if (job_->phase == Job::Phase::kReleasing) {
        // Every byte is in place; the release's answer is of no interest any more.
        job_->phase = Job::Phase::kFinished;
        job_->done = nullptr;
        return;
      }
      shared_->wake.notify_all();
      shared_->finished.wait(lock, [&] { return job_->phase == Job::Phase::kFinished; });
    }

   private:
    std::shared_ptr<Shared> shared_;
    std::shared_ptr<Job> job_;
  };

  void Run() {
    std::vector<std::shared_ptr<Job>> active;  // Moving bytes (or simulating it).
    while (true) {
      std::vector<std::shared_ptr<Job>> fresh;
      {
        std::unique_lock<std::mutex> lock(shared_->mu);
        if (active.empty()) {
          shared_->wake.wait(lock, [&] { return shared_->stop || !shared_->queued.empty(); });
        } else if (std::all_of(active.begin(), active.end(),
                               [](const auto& j) { return j->simulated; })) {
          Clock::time_point due = Clock::time_point::max();
          for (const auto& j : active) due = std::min(due, j->simulated_until);
          shared_->wake.wait_until(lock, due);
        }
        if (shared_->stop) break;
        fresh.assign(shared_->queued.begin(), shared_->queued.end());
        shared_->queued.clear();
      }
      for (auto& job : fresh) {
        if (Begin(job)) active.push_back(std::move(job));
      }
      bool moving = false;
      for (auto it = active.begin(); it != active.end();) {
        if (Advance(*it)) {
          it = active.erase(it);
        } else {
          moving |= !(*it)->simulated;
          ++it;
        }
      }
      // Real transfers are polled: a 2 MiB block takes ~50 µs, so a short sleep.
      if (moving) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    // Stopping: pulls still held end now (the engine drops its pulls before its puller).
    for (auto& job : active) Cancelled(*job);
    std::deque<std::shared_ptr<Job>> queued;
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      queued.swap(shared_->queued);
    }
    for (auto& job : queued) Cancelled(*job);
  }

  bool IsCancelled(Job& job) {
    std::lock_guard<std::mutex> lock(shared_->mu);
    return job.cancelled;
  }

  // Starts moving a job's bytes; false when it ended already.
  bool Begin(const std::shared_ptr<Job>& shared_job) {
    Job& job = *shared_job;
    bool cancelled = false;
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      job.phase = Job::Phase::kMoving;
      cancelled = job.cancelled;
    }
    if (cancelled) {
      Cancelled(job);
      return false;
    }
    const KvSource& source = job.source;
    if (source.transfer_backend.empty()) {
      if (options_.simulated_bytes_per_second > 0) {
        job.simulated = true;
        const double seconds = static_cast<double>(job.bytes) /
                               options_.simulated_bytes_per_second / options_.simulated_speedup;
        job.simulated_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                 std::chrono::duration<double>(seconds));
        return true;
      }
      Fail(job, UnavailableError("the prefill worker registered no KV memory for transfers "
                                 "(started without --transfer)"));
      return false;
    }
    if (options_.backend == nullptr || options_.local == nullptr) {
      Fail(job, FailedPreconditionError(
                    "this worker registered no KV memory for transfers (--transfer)"));
      return false;
    }
    if (source.transfer_backend != options_.backend->name()) {
      Fail(job, InvalidArgumentError("the prefill worker's KV is reachable over " +
                                     source.transfer_backend + ", this worker uses " +
                                     std::string(options_.backend->name())));
      return false;
    }
    auto connection = Connect(source);
    if (!connection.ok()) {
      Fail(job, connection.status());
      return false;
    }
    job.connection = std::move(connection).value();
    std::vector<TransferOp> ops;
    const uint64_t bb = options_.block_bytes;
    for (size_t i = 0; i < job.local.size(); ++i) {
      const uint64_t l = static_cast<uint64_t>(job.local[i]) * bb;
      const uint64_t r = static_cast<uint64_t>(job.remote[i]) * bb;
      if (!ops.empty() && ops.back().local_offset + ops.back().bytes == l &&
          ops.back().remote_offset + ops.back().bytes == r) {
        ops.back().bytes += bb;
      } else {
        ops.push_back({l, r, bb});
      }
    }
    auto transfer = options_.backend->Post(*options_.local, *job.connection, ops, Direction::kRead,
                                           Clock::now() + options_.timeout);
    if (!transfer.ok()) {
      Fail(job, transfer.status());
      return false;
    }
    job.transfer = std::move(transfer).value();
    return true;
  }

  // Polls a moving job; true when it has left the moving phase.
  bool Advance(const std::shared_ptr<Job>& shared_job) {
    Job& job = *shared_job;
    if (IsCancelled(job)) {
      Cancelled(job);
      return true;
    }
    if (job.simulated) {
      if (Clock::now() < job.simulated_until) return false;
    } else {
      const TransferState state = job.transfer->Poll();
      if (state == TransferState::kPending) return false;
      if (state == TransferState::kError) {
        const Status error = job.transfer->status();
        job.transfer.reset();
        Forget(job.source);  // The connection may be what broke.
        Fail(job, error);
        return true;
      }
      job.transfer.reset();
    }
    Moved(shared_job);
    return true;
  }

  // Every byte is in place: the lease is released with the blocks read, and the pull succeeds
  // once the prefill worker confirms it held them (then no block was reused under the read).
  void Moved(const std::shared_ptr<Job>& shared_job) {
    Job& job = *shared_job;
    bool cancelled = false;
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      // A pull dropped meanwhile waits for its end: it gets it now, not after a release's round
      // trip.
      cancelled = job.cancelled;
      if (!cancelled) job.phase = Job::Phase::kReleasing;
    }
    if (cancelled) {
      Cancelled(job);
      return;
    }
    if (!options_.release) {
      shared_->Finish(job, OkStatus());
      return;
    }
    // The callback may run after the puller is gone: it holds what it touches.
    options_.release(job.source, job.remote, [shared = shared_, job = shared_job](const Status& s) {
      shared->Finish(*job, s.ok() ? OkStatus()
                                  : UnavailableError("the prefill worker did not confirm "
                                                     "the KV lease: " +
                                                     s.ToString()));
    });
  }

  void Fail(Job& job, const Status& error) {
    Release(job.source);
    shared_->Finish(job, error);
  }

  void Cancelled(Job& job) {
    job.transfer.reset();  // Returns once no byte moves any more.
    Release(job.source);
    shared_->Finish(job, CancelledError("the pull was cancelled"));
  }

  StatusOr<std::shared_ptr<Connection>> Connect(const KvSource& source) {
    auto it = connections_.find(source.transfer_descriptor);
    if (it != connections_.end()) return it->second;
    auto connection = options_.backend->Connect(
        RemoteDescriptor{source.transfer_backend, source.transfer_descriptor});
    if (!connection.ok()) return connection.status();
    std::shared_ptr<Connection> shared = std::move(connection).value();
    if (connections_.size() >= options_.max_connections && !order_.empty()) {
      connections_.erase(order_.front());
      order_.pop_front();
    }
    connections_.emplace(source.transfer_descriptor, shared);
    order_.push_back(source.transfer_descriptor);
    return shared;
  }

  void Forget(const KvSource& source) {
    connections_.erase(source.transfer_descriptor);
    order_.remove(source.transfer_descriptor);
  }

  const KvPullerOptions options_;
  std::shared_ptr<Shared> shared_;
  // The puller thread's: connections by descriptor, oldest first in order_.
  std::unordered_map<std::string, std::shared_ptr<Connection>> connections_;
  std::list<std::string> order_;
  std::thread thread_;
};

}  // namespace

std::shared_ptr<KvPuller> CreateKvPuller(KvPullerOptions options) {
  return std::make_shared<Puller>(std::move(options));
}

}  // namespace tandem::transfer
