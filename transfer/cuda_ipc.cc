#include "transfer/cuda_ipc.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "transfer/device_copy.h"
#include "transfer/ops.h"
#include "transfer/wire.h"

namespace tandem::transfer {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMagic = 0x54495043;  // "TIPC"
constexpr int kIssueBudget = 256;         // copies one transfer issues per turn
constexpr int kMaxQueued = 1024;          // copies of one transfer queued on the stream at most

// A registered region while it lives; users are unfinished transfers touching it.
struct Region {
  MemoryRegion region;
  void* owned = nullptr;  // device memory the backend allocated for it
  std::mutex mu;
  std::condition_variable cv;
  bool alive = true;
  int users = 0;
};

// Every live registration of the process, so that a connection within the process reaches the
// region directly.
struct Table {
  std::mutex mu;
  std::map<std::pair<uint64_t, uint64_t>, std::weak_ptr<Region>> regions;  // (instance, id)
};

Table& TheTable() {
  static Table* table = new Table();
  return *table;
}

std::string NodeId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

struct Described {
  uint64_t instance = 0, id = 0, bytes = 0;
  uint32_t pid = 0;
  std::string node;
  IpcExport ipc;
};

std::string Encode(const Described& d) {
  wire::Writer w;
  w.Put(kMagic).Put(d.instance).Put(d.id).Put(d.bytes).Put(d.pid).Put(d.ipc.offset);
  w.PutBytes(d.node).PutBytes(d.ipc.handle).PutBytes(d.ipc.pci_bus_id);
  return w.Take();
}

bool Decode(std::string_view bytes, Described& d) {
  wire::Reader r(bytes);
  uint32_t magic = 0;
  return r.Get(magic) && magic == kMagic && r.Get(d.instance) && r.Get(d.id) && r.Get(d.bytes) &&
         r.Get(d.pid) && r.Get(d.ipc.offset) && r.GetBytes(d.node) && r.GetBytes(d.ipc.handle) &&
         r.GetBytes(d.ipc.pci_bus_id) && r.done();
}

class IpcRegistration final : public Registration {
 public:
  IpcRegistration(std::shared_ptr<Region> region, uint64_t instance, uint64_t id,
                  RemoteDescriptor d)
      : region_(std::move(region)), key_(instance, id), descriptor_(std::move(d)) {}
  ~IpcRegistration() override {
    {
      std::unique_lock lock(region_->mu);
      region_->alive = false;
      region_->cv.wait(lock, [&] { return region_->users == 0; });
    }
    {
      Table& t = TheTable();
      std::lock_guard lock(t.mu);
      t.regions.erase(key_);
    }
    if (region_->owned != nullptr) FreeDevice(region_->region.device, region_->owned);
  }
  const MemoryRegion& region() const override { return region_->region; }
  const RemoteDescriptor& descriptor() const override { return descriptor_; }
  const std::shared_ptr<Region>& state() const { return region_; }

 private:
  const std::shared_ptr<Region> region_;
  const std::pair<uint64_t, uint64_t> key_;
  const RemoteDescriptor descriptor_;
};

// A peer's region mapped into this process (or, within the process, the region itself).
struct Mapping {
  ~Mapping() {
    if (opened) CloseIpc(base, offset, device);
    if (pidfd >= 0) close(pidfd);
  }
  void* base = nullptr;
  uint64_t offset = 0, bytes = 0;
  int device = -1;
  bool opened = false;
  std::shared_ptr<Region> same_process;  // set when the region is this process's own
  pid_t pid = 0;                         // a peer process, watched for its exit
  int pidfd = -1;
  std::atomic<bool> exited{false};
};

class IpcConnection final : public Connection {
 public:
  explicit IpcConnection(std::shared_ptr<Mapping> m) : mapping_(std::move(m)) {}
  size_t remote_bytes() const override { return mapping_->bytes; }
  const std::shared_ptr<Mapping>& mapping() const { return mapping_; }

 private:
  std::shared_ptr<Mapping> mapping_;
};

struct Job {
  std::shared_ptr<Region> local;
  std::shared_ptr<Mapping> remote;
  std::vector<TransferOp> ops;
  Direction direction = Direction::kRead;
  Clock::time_point deadline;
  std::atomic<bool> cancel{false};

  // Worker thread only.
  size_t next = 0;
  uint64_t issued = 0, queued = 0;  // last ticket; copies on the stream since the last check
  Status failure;

  std::mutex mu;
  std::condition_variable cv;
  TransferState state = TransferState::kPending;
  Status error;
};

class IpcTransfer final : public Transfer {
 public:
  explicit IpcTransfer(std::shared_ptr<Job> job) : job_(std::move(job)) {}
  ~IpcTransfer() override {
    Cancel();
    std::unique_lock lock(job_->mu);  // the copies issued are done when it is no longer pending
    job_->cv.wait(lock, [&] { return job_->state != TransferState::kPending; });
  }
  TransferState Poll() override {
    std::lock_guard lock(job_->mu);
    return job_->state;
  }
  Status status() const override {
    std::lock_guard lock(job_->mu);
    return job_->error;
  }
  void Cancel() override { job_->cancel = true; }

 private:
  std::shared_ptr<Job> job_;
};

class CudaIpcBackend final : public Backend {
 public:
  CudaIpcBackend() : instance_(std::random_device{}() ^ (uint64_t(getpid()) << 32)) {
    worker_ = std::thread([this] { Work(); });
  }
  ~CudaIpcBackend() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  std::string_view name() const override { return "cuda_ipc"; }
  Capabilities capabilities() const override {
    return {.host_memory = false, .device_memory = DeviceCount() > 0,
            .same_process_only = false, .same_node_only = true};
  }

  StatusOr<std::unique_ptr<Registration>> Register(const MemoryRegion& region) override {
    if (region.kind != MemoryKind::kDevice) {
      return UnimplementedError("cuda_ipc: device memory only");
    }
    if (region.bytes == 0 || region.device < 0) {
      return InvalidArgumentError("cuda_ipc: an empty region or no device");
    }
    auto r = std::make_shared<Region>();
    r->region = region;
    if (region.base == nullptr) {
      auto p = AllocDevice(region.device, region.bytes);
      if (!p.ok()) return p.status();
      r->owned = r->region.base = *p;
    }
    auto exported = ExportIpc(r->region.base, region.device);
    if (!exported.ok()) {
      if (r->owned != nullptr) FreeDevice(region.device, r->owned);
      return exported.status();
    }
    const uint64_t id = next_id_++;
    Described d{.instance = instance_, .id = id, .bytes = region.bytes,
                .pid = static_cast<uint32_t>(getpid()), .node = node_,
                .ipc = std::move(exported).value()};
    {
      Table& t = TheTable();
      std::lock_guard lock(t.mu);
      t.regions[{instance_, id}] = r;
    }
    return std::unique_ptr<Registration>(
        new IpcRegistration(std::move(r), instance_, id, {"cuda_ipc", Encode(d)}));
  }

  StatusOr<std::unique_ptr<Connection>> Connect(const RemoteDescriptor& peer) override {
    Described d;
    if (peer.backend != "cuda_ipc" || !Decode(peer.bytes, d)) {
      return InvalidArgumentError("cuda_ipc: not a cuda_ipc descriptor");
    }
    if (d.node != node_) return UnavailableError("cuda_ipc: the peer is on another machine");
    auto m = std::make_shared<Mapping>();
    m->bytes = d.bytes;
    if (d.pid == static_cast<uint32_t>(getpid())) {
      Table& t = TheTable();
      std::lock_guard lock(t.mu);
      auto it = t.regions.find({d.instance, d.id});
      std::shared_ptr<Region> r = it == t.regions.end() ? nullptr : it->second.lock();
      if (r == nullptr) return UnavailableError("cuda_ipc: the peer's region is gone");
      m->same_process = r;
      m->base = r->region.base;
      m->device = r->region.device;
      return std::unique_ptr<Connection>(new IpcConnection(std::move(m)));
    }
    m->pid = static_cast<pid_t>(d.pid);
    m->pidfd = static_cast<int>(syscall(SYS_pidfd_open, d.pid, 0));
    if (m->pidfd < 0 && errno == ESRCH) return UnavailableError("cuda_ipc: the peer is gone");
    auto opened = OpenIpc(d.ipc);
    if (!opened.ok()) return opened.status();
    std::tie(m->base, m->device) = *opened;
    m->offset = d.ipc.offset;
    m->opened = true;
    return std::unique_ptr<Connection>(new IpcConnection(std::move(m)));
  }

  StatusOr<std::unique_ptr<Transfer>> Post(const Registration& local, Connection& peer,
                                           std::span<const TransferOp> ops, Direction direction,
                                           Clock::time_point deadline) override {
    const auto* reg = dynamic_cast<const IpcRegistration*>(&local);
    auto* conn = dynamic_cast<IpcConnection*>(&peer);
    if (reg == nullptr || conn == nullptr) {
      return InvalidArgumentError("cuda_ipc: a registration or connection of another backend");
    }
    if (Status s = CheckOps("cuda_ipc", ops, reg->region().bytes, conn->remote_bytes()); !s.ok()) {
      return s;
    }
    auto job = std::make_shared<Job>();
    job->local = reg->state();
    job->remote = conn->mapping();
    job->ops.assign(ops.begin(), ops.end());
    job->direction = direction;
    job->deadline = deadline;
    for (Region* r : {job->local.get(), job->remote->same_process.get()}) {
      if (r == nullptr) continue;
      std::lock_guard lock(r->mu);
      if (!r->alive) return UnavailableError("cuda_ipc: the region is gone");
      r->users++;
    }
    {
      std::lock_guard lock(mu_);
      incoming_.push_back(job);
    }
    cv_.notify_one();
    return std::unique_ptr<Transfer>(new IpcTransfer(std::move(job)));
  }

 private:
  void Work() {
    std::vector<std::shared_ptr<Job>> jobs;
    while (true) {
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(jobs.empty() ? 100 : 0),
                     [&] { return stop_ || !incoming_.empty() || !jobs.empty(); });
        if (stop_ && jobs.empty() && incoming_.empty()) return;
        for (auto& j : incoming_) jobs.push_back(std::move(j));
        incoming_.clear();
      }
      WatchPeers(jobs);
      bool waiting = true;
      for (auto& job : jobs) waiting &= Advance(*job);
      std::erase_if(jobs, [](const auto& j) { return j->state != TransferState::kPending; });
      if (waiting && !jobs.empty()) std::this_thread::yield();  // copies in flight: poll again
    }
  }

  void WatchPeers(const std::vector<std::shared_ptr<Job>>& jobs) {
    const auto now = Clock::now();
    if (now - last_watch_ < std::chrono::milliseconds(1)) return;
    last_watch_ = now;
    for (const auto& job : jobs) {
      Mapping& m = *job->remote;
      if (m.pid == 0 || m.exited) continue;
      pollfd p{m.pidfd, POLLIN, 0};
      m.exited = m.pidfd >= 0 ? poll(&p, 1, 0) == 1 : kill(m.pid, 0) != 0 && errno == ESRCH;
    }
  }

  DeviceCopier* CopierFor(int device, Status& error) {
    auto it = copiers_.find(device);
    if (it != copiers_.end()) return it->second.get();
    auto copier = DeviceCopier::Create(device);
    if (!copier.ok()) {
      error = copier.status();
      return nullptr;
    }
    return (copiers_[device] = std::move(copier).value()).get();
  }

  static bool Alive(Region* r) {
    if (r == nullptr) return true;
    std::lock_guard lock(r->mu);
    return r->alive;
  }

  // Issues what it may; true when the job only waits on copies already issued.
  bool Advance(Job& job) {
    if (job.failure.ok()) {
      if (job.cancel.load(std::memory_order_relaxed)) {
        job.failure = CancelledError("transfer cancelled");
      } else if (Clock::now() > job.deadline) {
        job.failure = DeadlineExceededError("cuda_ipc: transfer past its deadline");
      } else if (job.remote->exited) {
        job.failure = UnavailableError("cuda_ipc: the peer process exited");
      } else if (!Alive(job.local.get())) {
        job.failure = CancelledError("cuda_ipc: the local registration was dropped");
      } else if (!Alive(job.remote->same_process.get())) {
        job.failure = UnavailableError("cuda_ipc: the peer's region is gone");
      }
    }
    DeviceCopier* copier = CopierFor(job.local->region.device, job.failure);
    // The gather kernel runs on our device and reaches the peer's through peer access.
    const std::pair<int, int> devices(job.local->region.device, job.remote->device);
    if (job.failure.ok() && devices.first != devices.second && !peer_access_.contains(devices)) {
      job.failure = EnablePeerAccess(devices.first, devices.second);
      if (job.failure.ok()) peer_access_.insert(devices);
    }
    bool issued_now = false;
    if (job.failure.ok() && copier != nullptr && job.queued < kMaxQueued) {
      auto* local = static_cast<std::byte*>(job.local->region.base);
      auto* remote = static_cast<std::byte*>(job.remote->base);
      std::vector<void*> dst;
      std::vector<const void*> src;
      std::vector<size_t> bytes;
      for (int budget = kIssueBudget; budget > 0 && job.next < job.ops.size(); --budget) {
        const TransferOp& op = job.ops[job.next++];
        const bool read = job.direction == Direction::kRead;
        dst.push_back(read ? local + op.local_offset : remote + op.remote_offset);
        src.push_back(read ? remote + op.remote_offset : local + op.local_offset);
        bytes.push_back(op.bytes);
      }
      StatusOr<uint64_t> t = copier->Gather(dst, src, bytes);
      if (!t.ok()) {
        job.failure = t.status();
      } else if (!dst.empty()) {
        job.issued = *t;
        job.queued += dst.size();
        issued_now = true;
      }
    }
    bool copies_done = true;
    if (job.issued != 0 && copier != nullptr) {
      StatusOr<bool> done = copier->Done(job.issued);
      if (!done.ok() && job.failure.ok()) job.failure = done.status();
      copies_done = !done.ok() || *done;
      if (copies_done) job.queued = 0;
    }
    if (!copies_done || (job.failure.ok() && job.next < job.ops.size())) return !issued_now;
    for (Region* r : {job.local.get(), job.remote->same_process.get()}) {
      if (r == nullptr) continue;
      std::lock_guard lock(r->mu);
      r->users--;
      r->cv.notify_all();
    }
    std::lock_guard lock(job.mu);
    job.state = job.failure.ok() ? TransferState::kDone : TransferState::kError;
    job.error = job.failure;
    job.cv.notify_all();
    return false;
  }

  const uint64_t instance_;
  const std::string node_ = NodeId();
  std::atomic<uint64_t> next_id_{1};

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Job>> incoming_;
  bool stop_ = false;

  // Worker thread only.
  std::map<int, std::unique_ptr<DeviceCopier>> copiers_;
  std::set<std::pair<int, int>> peer_access_;  // (ours, theirs) enabled
  Clock::time_point last_watch_;
  std::thread worker_;
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> MakeCudaIpcBackend(const BackendOptions&) {
  if (DeviceCount() == 0) return UnavailableError("cuda_ipc: no CUDA device visible");
  return std::unique_ptr<Backend>(new CudaIpcBackend());
}

}  // namespace tandem::transfer
