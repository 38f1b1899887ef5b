#include "transfer/ucx.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <list>
#include <map>
#include <mutex>
#include <random>
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

constexpr uint64_t kRmaChunk = 8 << 20;    // one get or put request at most
constexpr int kRmaWindow = 16;             // get/put requests in flight per transfer
constexpr uint64_t kStageChunk = 4 << 20;  // one staged piece: one pinned slot
constexpr int kStageSlots = 8;             // pinned slots per role (requester, server)
constexpr int kStageWindow = 4;            // staged pieces in flight per transfer
constexpr int kIssueBudget = 256;          // ops one transfer issues per turn of the loop
constexpr uint32_t kMagic = 0x54554358;    // "TUCX"

// Active messages of the staged path: the owner of a staged (device) region stages pieces of it
// in its slots at a requester's request; the bytes cross between slots by one-sided get/put (or,
// when UCX can map the owner's slots here, by the requester's own device copies).
enum AmId : uint16_t {
  kAmStageOut = 1,  // requester → owner: {token, region, offset, bytes}: stage this piece
  kAmStaged,        // owner → requester: {token, slot}: it is in that slot
  kAmSlotRequest,   // requester → owner: {token}: a slot to write a piece into
  kAmSlotGranted,   // owner → requester: {token, slot}
  kAmStageIn,       // requester → owner: {token, region, offset, bytes, slot}: put it there
  kAmWriteAck,      // owner → requester: {token}
  kAmRelease,       // requester → owner: {slot}: done with it
  kAmFail,          // owner → requester: {token}, the error message as data
};
constexpr auto kHeldSlotTimeout = std::chrono::seconds(30);  // a requester that vanished

struct AmHeader {
  uint64_t token = 0;
  uint64_t region = 0;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  int64_t slot = -1;
};

Status UcsError(std::string_view what, ucs_status_t s) {
  return UnavailableError("ucx: " + std::string(what) + ": " + ucs_status_string(s));
}

// A registered region, as the progress thread sees it.
struct Region {
  uint64_t id = 0;
  MemoryRegion region;
  ucp_mem_h memh = nullptr;  // null for a staged (device) region
  bool alive = true;
  int users = 0;  // unfinished transfers that touch it
};

// An endpoint to a peer's worker, shared by every connection to that worker.
struct Peer {
  std::string address;
  ucp_ep_h ep = nullptr;
  uint32_t pid = 0;  // a peer process on this machine, watched for its exit
  int pidfd = -1;    // through a pidfd where the kernel (or valgrind) offers one
  Status error;  // once the endpoint failed; the endpoint is then closed
  int uses = 0;  // connections holding it
  // The peer's staging slots, for staged regions of its: their remote key, and where they are
  // mapped here when UCX can map them (a peer on this machine).
  ucp_rkey_h slots_rkey = nullptr;
  uint64_t slots_base = 0;
  std::byte* slots_mapped = nullptr;
  bool slots_pinned = false;
};

class UcxBackend;

// A connection's state; released on the progress thread (every owner drops it there).
struct Conn {
  ~Conn();
  UcxBackend* backend = nullptr;
  Peer* peer = nullptr;
  ucp_rkey_h rkey = nullptr;  // null when the remote region is staged
  uint64_t remote_id = 0, remote_base = 0, remote_bytes = 0;
  std::shared_ptr<Region> same_backend;  // the remote region when it is this backend's own
};

// Descriptor fields.
struct Described {
  uint64_t instance = 0, id = 0, base = 0, bytes = 0, slots_base = 0;
  uint32_t pid = 0;
  uint8_t staged = 0;
  std::string node, address, rkey, slots_rkey;  // rkey: the region's; slots: staged regions
};

std::string Encode(const Described& d) {
  wire::Writer w;
  w.Put(kMagic).Put(d.instance).Put(d.id).Put(d.base).Put(d.bytes).Put(d.slots_base);
  w.Put(d.pid).Put(d.staged);
  w.PutBytes(d.node).PutBytes(d.address).PutBytes(d.rkey).PutBytes(d.slots_rkey);
  return w.Take();
}

bool Decode(std::string_view bytes, Described& d) {
  wire::Reader r(bytes);
  uint32_t magic = 0;
  return r.Get(magic) && magic == kMagic && r.Get(d.instance) && r.Get(d.id) && r.Get(d.base) &&
         r.Get(d.bytes) && r.Get(d.slots_base) && r.Get(d.pid) && r.Get(d.staged) &&
         r.GetBytes(d.node) && r.GetBytes(d.address) && r.GetBytes(d.rkey) &&
         r.GetBytes(d.slots_rkey) && r.done() && !d.address.empty() &&
         (d.staged != 0) == d.rkey.empty() && (d.staged != 0) == !d.slots_rkey.empty();
}

// This machine's identity for as long as it runs: its boot id.
std::string NodeId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

struct Job;

// A staged piece a requester has in flight. It waits on one thing at a time — a device copy, a
// UCX request or the owner's answer — and moves to its next step when that completes.
enum class Step {
  kStart,
  kAskOwner,   // write: ask the owner for a slot
  kMove,       // the bytes cross (device copy into a mapped slot, or get/put)
  kTellOwner,  // write: the owner's slot holds the piece; tell it where it goes
  kRelease,    // read: the owner's slot may go; then a slot of ours may still go to the device
  kLast,       // read into our slot: slot → device
  kDone,
};

struct Piece {
  Job* job = nullptr;
  uint64_t local_offset = 0, remote_offset = 0, bytes = 0;
  Step step = Step::kStart;
  int slot = -1;          // a slot of ours
  int64_t owner_slot = -1;  // a slot of the owner's we hold
  uint64_t ticket = 0;    // the device copy waited for, when not 0
  bool request = false;   // a UCX request waited for
  bool answer = false;    // the owner's answer waited for
};

struct Job {
  std::shared_ptr<Region> local;
  std::shared_ptr<Conn> conn;
  std::vector<TransferOp> ops;
  Direction direction = Direction::kRead;
  Clock::time_point deadline;
  bool staged = false;  // either end is staged device memory
  std::atomic<bool> cancel{false};

  // Progress thread only.
  uint64_t id = 0;  // what its UCX requests' callbacks name it by
  size_t op = 0;
  uint64_t at = 0;  // next byte of ops[op] to issue
  int in_flight = 0;
  bool flushed = false;
  bool finished = false;
  Status failure;

  // Shared with the handle.
  std::mutex mu;
  std::condition_variable cv;
  TransferState state = TransferState::kPending;
  Status error;
};

// A staged request the owner serves (kAmStageOut, kAmSlotRequest, kAmStageIn, kAmRelease).
struct Served {
  uint16_t kind = 0;
  AmHeader header;
  ucp_ep_h reply = nullptr;
  std::shared_ptr<Region> region;
  uint64_t ticket = 0;
  bool done = false;
};

class UcxBackend;

class UcxRegistration final : public Registration {
 public:
  UcxRegistration(UcxBackend* backend, std::shared_ptr<Region> region, RemoteDescriptor d)
      : backend_(backend), region_(std::move(region)), descriptor_(std::move(d)) {}
  ~UcxRegistration() override;
  const MemoryRegion& region() const override { return region_->region; }
  const RemoteDescriptor& descriptor() const override { return descriptor_; }
  const std::shared_ptr<Region>& state() const { return region_; }

 private:
  UcxBackend* const backend_;
  std::shared_ptr<Region> region_;
  const RemoteDescriptor descriptor_;
};

class UcxConnection final : public Connection {
 public:
  UcxConnection(UcxBackend* backend, std::shared_ptr<Conn> conn)
      : backend_(backend), conn_(std::move(conn)) {}
  ~UcxConnection() override;
  size_t remote_bytes() const override { return conn_->remote_bytes; }
  const std::shared_ptr<Conn>& state() const { return conn_; }

 private:
  UcxBackend* const backend_;
  std::shared_ptr<Conn> conn_;
};

class UcxTransfer final : public Transfer {
 public:
  UcxTransfer(UcxBackend* backend, std::shared_ptr<Job> job)
      : backend_(backend), job_(std::move(job)) {}
  ~UcxTransfer() override;
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
  UcxBackend* const backend_;
  std::shared_ptr<Job> job_;
};

class UcxBackend final : public Backend {
 public:
  UcxBackend() = default;
  ~UcxBackend() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    Wake();
    if (thread_.joinable()) thread_.join();
    if (wake_fd_ >= 0) close(wake_fd_);
  }

  Status Start() {
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) return InternalError("ucx: eventfd failed");
    instance_ = std::random_device{}() ^ (uint64_t{static_cast<uint32_t>(getpid())} << 32);
    std::promise<Status> started;
    thread_ = std::thread([this, &started] {
      current_ = this;
      Status s = Init();
      const bool ok = s.ok();
      started.set_value(std::move(s));
      if (ok) Loop();
      Shutdown();
    });
    return started.get_future().get();
  }

  std::string_view name() const override { return "ucx"; }
  Capabilities capabilities() const override {
    return {.host_memory = true, .device_memory = DeviceCount() > 0 || cuda_direct_,
            .same_process_only = false, .same_node_only = false};
  }

  StatusOr<std::unique_ptr<Registration>> Register(const MemoryRegion& region) override {
    if (region.bytes == 0 || (region.base == nullptr && region.kind != MemoryKind::kHost)) {
      return InvalidArgumentError("ucx: an empty region");
    }
    return Call<StatusOr<std::unique_ptr<Registration>>>([&] { return DoRegister(region); });
  }

  StatusOr<std::unique_ptr<Connection>> Connect(const RemoteDescriptor& peer) override {
    Described d;
    if (peer.backend != "ucx" || !Decode(peer.bytes, d)) {
      return InvalidArgumentError("ucx: not a ucx descriptor (" + std::to_string(peer.bytes.size()) +
                                  " bytes)");
    }
    return Call<StatusOr<std::unique_ptr<Connection>>>([&] { return DoConnect(d); });
  }

  StatusOr<std::unique_ptr<Transfer>> Post(const Registration& local, Connection& peer,
                                           std::span<const TransferOp> ops, Direction direction,
                                           Clock::time_point deadline) override {
    const auto* reg = dynamic_cast<const UcxRegistration*>(&local);
    auto* conn = dynamic_cast<UcxConnection*>(&peer);
    if (reg == nullptr || conn == nullptr) {
      return InvalidArgumentError("ucx: a registration or connection of another backend");
    }
    if (Status s = CheckOps("ucx", ops, reg->region().bytes, conn->remote_bytes()); !s.ok()) {
      return s;
    }
    auto job = std::make_shared<Job>();
    job->local = reg->state();
    job->conn = conn->state();
    job->ops.assign(ops.begin(), ops.end());
    job->direction = direction;
    job->deadline = deadline;
    job->staged = job->local->memh == nullptr || job->conn->rkey == nullptr;
    Status s = Call<Status>([&] {
      if (!job->staged && !job->local->alive) {
        return CancelledError("ucx: the local registration was dropped");
      }
        if (job->staged) {
        if (Status slots = EnsureSlots(); !slots.ok()) return slots;
      }
      job->local->users++;
      if (job->conn->same_backend) job->conn->same_backend->users++;
      job->id = next_token_++;
      job_ids_[job->id] = job.get();
      jobs_.push_back(job);
      return OkStatus();
    });
    if (!s.ok()) return s;
    return std::unique_ptr<Transfer>(new UcxTransfer(this, std::move(job)));
  }

  // Runs fn on the progress thread and returns its result. Whatever fn captures by value is
  // destroyed there too, which is how handles release UCX objects.
  template <typename R, typename F>
  R Call(F&& fn) {
    if (std::this_thread::get_id() == thread_.get_id()) return fn();
    std::promise<R> result;
    {
      std::lock_guard lock(mu_);
      commands_.push_back([&] { result.set_value(fn()); });
    }
    Wake();
    return result.get_future().get();
  }

  // Blocks until no unfinished transfer touches the region, then deregisters it.
  void Deregister(const std::shared_ptr<Region>& region) {
    Call<int>([&] {
      region->alive = false;
      return 0;
    });
    while (!Call<bool>([&] { return region->users == 0; })) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    Call<int>([&] {
      if (region->memh != nullptr) ucp_mem_unmap(context_, region->memh);
      regions_.erase(region->id);
      return 0;
    });
  }

  void ReleaseConnection(std::shared_ptr<Conn> conn) {
    Call<int>([&] {
      conn.reset();
      return 0;
    });
  }

  // Cancels the job and returns once none of its bytes move any more.
  void Drop(std::shared_ptr<Job> job) {
    job->cancel = true;
    Wake();
    {
      std::unique_lock lock(job->mu);
      job->cv.wait(lock, [&] { return job->state != TransferState::kPending; });
    }
    Call<int>([&] {
      job.reset();  // the last reference to its connection may go here, on this thread
      return 0;
    });
  }

 private:
  void Wake() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
  }

  Status Init() {
    ucp_config_t* config = nullptr;
    if (ucs_status_t s = ucp_config_read(nullptr, nullptr, &config); s != UCS_OK) {
      return UcsError("ucp_config_read", s);
    }
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
    ucs_status_t s = ucp_init(&params, config, &context_);
    ucp_config_release(config);
    if (s != UCS_OK) return UcsError("ucp_init", s);

    ucp_context_attr_t attr{};
    attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
    if (ucp_context_query(context_, &attr) == UCS_OK) {
      cuda_direct_ = (attr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
    }

    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;  // only the progress thread touches it
    if (s = ucp_worker_create(context_, &wp, &worker_); s != UCS_OK) {
      return UcsError("ucp_worker_create", s);
    }
    ucp_worker_attr_t wattr{};
    wattr.field_mask = UCP_WORKER_ATTR_FIELD_ADDRESS;
    if (s = ucp_worker_query(worker_, &wattr); s != UCS_OK) return UcsError("ucp_worker_query", s);
    address_.assign(reinterpret_cast<const char*>(wattr.address), wattr.address_length);
    ucp_worker_release_address(worker_, wattr.address);
    if (ucp_worker_get_efd(worker_, &worker_fd_) != UCS_OK) worker_fd_ = -1;

    for (AmTarget& target : am_targets_) {
      const uint16_t id = static_cast<uint16_t>(&target - am_targets_ + 1);
      target = {this, id};
      ucp_am_handler_param_t hp{};
      hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                      UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
      hp.id = id;
      hp.flags = UCP_AM_FLAG_WHOLE_MSG;
      hp.cb = &UcxBackend::OnAm;
      hp.arg = &target;
      if (s = ucp_worker_set_am_recv_handler(worker_, &hp); s != UCS_OK) {
        return UcsError("ucp_worker_set_am_recv_handler", s);
      }
    }
    return OkStatus();
  }

  void Shutdown() {
    if (worker_ != nullptr) {
      // Handles outlive nothing: whatever is left is closed by force.
      for (auto& [address, peer] : peers_) {
        ReleaseSlotsKey(*peer);
        if (peer->ep != nullptr) CloseEndpoint(*peer, /*force=*/true);
      }
      for (auto& peer : retired_) ReleaseSlotsKey(*peer);
      const auto until = Clock::now() + std::chrono::seconds(2);
      while (closing_ > 0 && Clock::now() < until) ucp_worker_progress(worker_);
      for (Slots* pool : {&request_slots_, &serve_slots_}) {
        if (pool->base != nullptr) UnpinHost(pool->base);
        if (pool->memh != nullptr) ucp_mem_unmap(context_, pool->memh);
      }
      ucp_worker_destroy(worker_);
    }
    if (context_ != nullptr) ucp_cleanup(context_);
  }

  // The progress loop: commands, transfers, UCX progress; when idle, sleeps on the worker's
  // event fd and the wake fd.
  void Loop() {
    auto last_busy = Clock::now();
    while (true) {
      std::deque<std::function<void()>> commands;
      {
        std::lock_guard lock(mu_);
        if (stop_) return;
        commands.swap(commands_);
      }
      for (auto& command : commands) command();
      bool busy = !commands.empty();

      for (size_t i = 0; i < jobs_.size();) {
        Advance(*jobs_[i]);
        if (jobs_[i]->finished) {
          jobs_[i] = std::move(jobs_.back());
          jobs_.pop_back();
        } else {
          ++i;
        }
      }
      busy |= !jobs_.empty() || !served_.empty() || !pieces_.empty();
      PollCopies();
      ServeQueued();
      while (ucp_worker_progress(worker_) != 0) busy = true;
      CloseFailedPeers();

      const auto now = Clock::now();
      if (busy) {
        last_busy = now;
      } else if (now - last_busy > std::chrono::milliseconds(2)) {
        Sleep();
        last_busy = Clock::now();
      }
    }
  }

  void Sleep() {
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {worker_fd_, POLLIN, 0}};
    int n = 1;
    if (worker_fd_ >= 0) {
      const ucs_status_t armed = ucp_worker_arm(worker_);
      if (armed == UCS_ERR_BUSY) return;  // events came in meanwhile
      if (armed == UCS_OK) n = 2;
    }
    // The timeout covers transports that cannot wake a sleeping worker.
    poll(fds, n, 5);
    uint64_t drained;
    [[maybe_unused]] ssize_t r = read(wake_fd_, &drained, sizeof drained);
  }

  // ---- registration and connection (progress thread) ----

  StatusOr<std::unique_ptr<Registration>> DoRegister(const MemoryRegion& region) {
    auto r = std::make_shared<Region>();
    r->id = next_region_++;
    r->region = region;
    const bool staged = region.kind == MemoryKind::kDevice && !cuda_direct_;
    Described d{.instance = instance_, .id = r->id, .base = 0, .bytes = region.bytes,
                .pid = static_cast<uint32_t>(getpid()), .staged = staged, .node = node_,
                .address = address_, .rkey = {}, .slots_rkey = {}};
    if (staged) {
      if (Status s = EnsureSlots(); !s.ok()) return s;
      d.slots_base = reinterpret_cast<uint64_t>(serve_slots_.base);
      d.slots_rkey = serve_slots_.rkey;
      if (!copiers_.contains(region.device)) {
        auto copier = DeviceCopier::Create(region.device);
        if (!copier.ok()) return copier.status();
        copiers_[region.device] = std::move(copier).value();
      }
    } else {
      // A region without a base is memory UCX allocates: on this machine, shared memory its
      // peers map and copy from directly, the fastest path there is.
      ucp_mem_map_params_t mp{};
      mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                      UCP_MEM_MAP_PARAM_FIELD_FLAGS;
      mp.address = region.base;
      mp.length = region.bytes;
      mp.flags = region.base == nullptr ? UCP_MEM_MAP_ALLOCATE : 0;
      if (ucs_status_t s = ucp_mem_map(context_, &mp, &r->memh); s != UCS_OK) {
        return UcsError("ucp_mem_map", s);
      }
      if (region.base == nullptr) {
        ucp_mem_attr_t attr{};
        attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS;
        if (ucs_status_t s = ucp_mem_query(r->memh, &attr); s != UCS_OK) {
          ucp_mem_unmap(context_, r->memh);
          return UcsError("ucp_mem_query", s);
        }
        r->region.base = attr.address;
      }
      void* packed = nullptr;
      size_t packed_size = 0;
      if (ucs_status_t s = ucp_rkey_pack(context_, r->memh, &packed, &packed_size); s != UCS_OK) {
        ucp_mem_unmap(context_, r->memh);
        return UcsError("ucp_rkey_pack", s);
      }
      d.rkey.assign(static_cast<const char*>(packed), packed_size);
      d.base = reinterpret_cast<uint64_t>(r->region.base);
      ucp_rkey_buffer_release(packed);
    }
    regions_[r->id] = r;
    return std::unique_ptr<Registration>(
        new UcxRegistration(this, std::move(r), RemoteDescriptor{"ucx", Encode(d)}));
  }

  StatusOr<std::unique_ptr<Connection>> DoConnect(const Described& d) {
    auto conn = std::make_shared<Conn>();
    conn->backend = this;
    conn->remote_id = d.id;
    conn->remote_base = d.base;
    conn->remote_bytes = d.bytes;
    if (d.instance == instance_) {
      auto it = regions_.find(d.id);
      if (it == regions_.end() || !it->second->alive) {
        return UnavailableError("ucx: the peer's region is gone");
      }
      conn->same_backend = it->second;
    }
    StatusOr<Peer*> peer = PeerFor(d);
    if (!peer.ok()) return peer.status();
    conn->peer = *peer;
    conn->peer->uses++;
    if (!d.rkey.empty()) {
      if (ucs_status_t s = ucp_ep_rkey_unpack(conn->peer->ep, d.rkey.data(), &conn->rkey);
          s != UCS_OK) {
        return UcsError("ucp_ep_rkey_unpack", s);  // conn lets go of the peer here
      }
    }
    Peer& p = *conn->peer;
    if (!d.slots_rkey.empty() && p.slots_rkey == nullptr) {
      if (ucs_status_t s = ucp_ep_rkey_unpack(p.ep, d.slots_rkey.data(), &p.slots_rkey);
          s != UCS_OK) {
        return UcsError("ucp_ep_rkey_unpack (staging)", s);
      }
      p.slots_base = d.slots_base;
      void* mapped = nullptr;
      if (ucp_rkey_ptr(p.slots_rkey, d.slots_base, &mapped) == UCS_OK) {
        p.slots_mapped = static_cast<std::byte*>(mapped);
        // Pinned here too, device copies reach the owner's slots at full speed. Our own slots
        // (a loopback connection) are pinned already.
        p.slots_pinned = mapped != serve_slots_.base &&
                         PinHost(mapped, kStageSlots * kStageChunk).ok();
      }
    }
    return std::unique_ptr<Connection>(new UcxConnection(this, std::move(conn)));
  }

  // Peer error handling picks the transport: UCX 1.13's shared memory and cma transports have
  // none, so a peer on this machine gets an endpoint without it (fast transports) and is watched
  // through a pidfd instead; a peer elsewhere gets UCX's (tcp, verbs).
  StatusOr<Peer*> PeerFor(const Described& d) {
    const std::string& address = d.address;
    auto& slot = peers_[address];
    if (slot != nullptr && slot->error.ok()) return slot.get();
    if (slot != nullptr) retired_.push_back(std::move(slot));  // a failed endpoint: start anew
    auto peer = std::make_unique<Peer>();
    peer->address = address;
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = reinterpret_cast<const ucp_address_t*>(address.data());
    const bool same_node = d.node == node_ && !node_.empty();
    ep.err_mode = same_node ? UCP_ERR_HANDLING_MODE_NONE : UCP_ERR_HANDLING_MODE_PEER;
    if (same_node && d.pid != static_cast<uint32_t>(getpid())) {
      peer->pid = d.pid;
      peer->pidfd = static_cast<int>(syscall(SYS_pidfd_open, d.pid, 0));
      if (peer->pidfd < 0 && errno == ESRCH) {
        peers_.erase(address);
        return UnavailableError("ucx: the peer process " + std::to_string(d.pid) + " is gone");
      }
    }
    ep.err_handler.cb = &UcxBackend::OnEndpointError;
    ep.err_handler.arg = peer.get();
    if (ucs_status_t s = ucp_ep_create(worker_, &ep, &peer->ep); s != UCS_OK) {
      if (peer->pidfd >= 0) close(peer->pidfd);
      peers_.erase(address);
      return UcsError("ucp_ep_create", s);
    }
    slot = std::move(peer);
    return slot.get();
  }

 public:
  // The last owner of a connection's state let go of it (on the progress thread).
  void ConnGone(Conn& conn) {
    if (conn.rkey != nullptr) ucp_rkey_destroy(conn.rkey);
    Peer* peer = conn.peer;
    if (peer != nullptr && --peer->uses == 0) {
      ReleaseSlotsKey(*peer);
      if (peer->ep != nullptr) CloseEndpoint(*peer, /*force=*/!peer->error.ok());
      ForgetPeer(peer);
    }
  }

 private:

  void ForgetPeer(Peer* peer) {
    ReleaseSlotsKey(*peer);
    if (peer->pidfd >= 0) close(peer->pidfd);
    peer->pidfd = -1;
    auto it = peers_.find(peer->address);
    if (it != peers_.end() && it->second.get() == peer) {
      peers_.erase(it);
      return;
    }
    std::erase_if(retired_, [&](const auto& p) { return p.get() == peer; });
  }

  void ReleaseSlotsKey(Peer& peer) {
    if (peer.slots_pinned) UnpinHost(peer.slots_mapped);
    if (peer.slots_rkey != nullptr) ucp_rkey_destroy(peer.slots_rkey);
    peer.slots_rkey = nullptr;
    peer.slots_mapped = nullptr;
    peer.slots_pinned = false;
  }

  static void OnEndpointError(void* arg, ucp_ep_h, ucs_status_t status) {
    auto* peer = static_cast<Peer*>(arg);
    if (peer->error.ok()) {
      peer->error = UnavailableError(std::string("ucx: the peer is gone (") +
                                     ucs_status_string(status) + ")");
    }
  }

  void CloseEndpoint(Peer& peer, bool force) {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK |
                     UCP_OP_ATTR_FIELD_USER_DATA;
    p.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    p.cb.send = [](void* request, ucs_status_t, void* self) {
      static_cast<UcxBackend*>(self)->closing_--;
      ucp_request_free(request);
    };
    p.user_data = this;
    ucs_status_ptr_t r = ucp_ep_close_nbx(peer.ep, &p);
    peer.ep = nullptr;
    if (UCS_PTR_IS_PTR(r)) closing_++;
  }

  // Endpoints that failed: the transfers on them fail, staged pieces waiting on the peer's answer
  // with them, and the endpoint is closed by force (its requests complete with errors).
  void CloseFailedPeers() {
    const auto now = Clock::now();
    if (now - last_watch_ > std::chrono::milliseconds(1)) {
      last_watch_ = now;
      for (auto& [address, peer] : peers_) {
        if (peer->pid == 0 || !peer->error.ok()) continue;
        pollfd p{peer->pidfd, POLLIN, 0};
        const bool exited = peer->pidfd >= 0 ? poll(&p, 1, 0) == 1
                                             : kill(static_cast<pid_t>(peer->pid), 0) != 0 &&
                                                   errno == ESRCH;
        if (exited) peer->error = UnavailableError("ucx: the peer process exited");
      }
    }
    for (auto& [address, peer] : peers_) {
      if (peer->error.ok() || peer->ep == nullptr) continue;
      FailPieces(peer.get(), peer->error);
      CloseEndpoint(*peer, /*force=*/true);
    }
    for (auto& peer : retired_) {
      if (!peer->error.ok() && peer->ep != nullptr) {
        FailPieces(peer.get(), peer->error);
        CloseEndpoint(*peer, /*force=*/true);
      }
    }
  }

  void FailPeer(Peer* peer, Status error) {
    if (peer->error.ok()) peer->error = std::move(error);
  }

  // ---- transfers (progress thread) ----

  void Advance(Job& job) {
    if (job.finished) return;
    Peer* peer = job.conn->peer;
    const bool late = Clock::now() > job.deadline;
    if (job.failure.ok()) {
      if (job.cancel.load(std::memory_order_relaxed)) {
        job.failure = CancelledError("transfer cancelled");
      } else if (late) {
        job.failure = DeadlineExceededError("ucx: transfer past its deadline");
      } else if (!peer->error.ok()) {
        job.failure = peer->error;
      } else if (!job.local->alive) {
        job.failure = CancelledError("ucx: the local registration was dropped");
      } else if (job.conn->same_backend && !job.conn->same_backend->alive) {
        job.failure = UnavailableError("ucx: the peer's region is gone");
      }
    }
    if (job.in_flight > 0 && late) {
      // Requests still out at the deadline: the peer is slow or gone; stop waiting for it.
      FailPeer(peer, UnavailableError("ucx: endpoint closed: a transfer on it missed its "
                                      "deadline"));
    }
    if (job.failure.ok()) {
      if (job.staged) {
        IssueStaged(job);
      } else {
        IssueRma(job);
      }
    }
    if (job.in_flight > 0 || (job.failure.ok() && job.op < job.ops.size())) return;
    if (job.failure.ok() && job.direction == Direction::kWrite && !job.flushed) {
      // A put is complete here once its source may be reused; the flush makes it remote.
      job.flushed = true;
      ucs_status_ptr_t r = ucp_ep_flush_nbx(peer->ep, &Param(&UcxBackend::OnJobRequest, JobKey(job)));
      if (UCS_PTR_IS_PTR(r)) {
        job.in_flight++;
        return;
      }
      if (UCS_PTR_STATUS(r) != UCS_OK) job.failure = UcsError("flush", UCS_PTR_STATUS(r));
    }
    Finish(job);
  }

  void Finish(Job& job) {
    job.finished = true;
    job_ids_.erase(job.id);
    job.local->users--;
    if (job.conn->same_backend) job.conn->same_backend->users--;
    std::lock_guard lock(job.mu);
    job.state = job.failure.ok() ? TransferState::kDone : TransferState::kError;
    job.error = job.failure;
    job.cv.notify_all();
  }

  static ucp_request_param_t& Param(ucp_send_nbx_callback_t cb, void* user_data,
                                    uint32_t flags = 0) {
    thread_local ucp_request_param_t p;
    p = {};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    if (flags != 0) p.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = flags;
    p.cb.send = cb;
    p.user_data = user_data;
    return p;
  }

  static void* JobKey(const Job& job) { return reinterpret_cast<void*>(job.id); }

  static void OnJobRequest(void* request, ucs_status_t status, void* user_data) {
    ucp_request_free(request);
    auto it = current_->job_ids_.find(reinterpret_cast<uint64_t>(user_data));
    if (it == current_->job_ids_.end()) return;  // abandoned with its failed peer
    Job* job = it->second;
    if (job->in_flight > 0) job->in_flight--;
    if (status != UCS_OK && job->failure.ok()) job->failure = RequestError(*job, status);
  }

  static Status RequestError(const Job& job, ucs_status_t status) {
    if (!job.conn->peer->error.ok()) return job.conn->peer->error;
    return UcsError(job.direction == Direction::kRead ? "get" : "put", status);
  }

  // Host memory both ends (or device memory UCX reaches): one-sided gets or puts, in chunks.
  void IssueRma(Job& job) {
    ucp_ep_h ep = job.conn->peer->ep;
    auto* local = static_cast<std::byte*>(job.local->region.base);
    for (int budget = kIssueBudget;
         budget > 0 && job.op < job.ops.size() && job.in_flight < kRmaWindow; --budget) {
      const TransferOp& op = job.ops[job.op];
      const uint64_t n = std::min(kRmaChunk, op.bytes - job.at);
      void* buffer = local + op.local_offset + job.at;
      const uint64_t remote = job.conn->remote_base + op.remote_offset + job.at;
      auto& p = Param(&UcxBackend::OnJobRequest, JobKey(job));
      ucs_status_ptr_t r = job.direction == Direction::kRead
                               ? ucp_get_nbx(ep, buffer, n, remote, job.conn->rkey, &p)
                               : ucp_put_nbx(ep, buffer, n, remote, job.conn->rkey, &p);
      if (UCS_PTR_IS_ERR(r)) {
        job.failure = RequestError(job, UCS_PTR_STATUS(r));
        return;
      }
      if (r != nullptr) job.in_flight++;
      job.at += n;
      if (job.at >= op.bytes) {
        job.op++;
        job.at = 0;
      }
    }
  }

  // ---- the staged path ----

  struct Slots {
    void* base = nullptr;
    ucp_mem_h memh = nullptr;
    std::string rkey;  // packed, for the descriptors of staged regions
    std::vector<int> free;
    std::map<int, Clock::time_point> held;  // serving slots a requester holds, since when
    std::byte* at(int64_t slot) const {
      return static_cast<std::byte*>(base) + slot * kStageChunk;
    }
  };

  // Staging slots: shared memory UCX allocates (peers on this node map it), pinned for CUDA.
  Status EnsureSlots() {
    for (Slots* pool : {&request_slots_, &serve_slots_}) {
      if (pool->base != nullptr) continue;
      ucp_mem_map_params_t mp{};
      mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                      UCP_MEM_MAP_PARAM_FIELD_FLAGS;
      mp.address = nullptr;
      mp.length = kStageSlots * kStageChunk;
      mp.flags = UCP_MEM_MAP_ALLOCATE;
      if (ucs_status_t s = ucp_mem_map(context_, &mp, &pool->memh); s != UCS_OK) {
        return UcsError("ucp_mem_map (staging)", s);
      }
      ucp_mem_attr_t attr{};
      attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS;
      ucs_status_t queried = ucp_mem_query(pool->memh, &attr);
      void* packed = nullptr;
      size_t packed_size = 0;
      if (queried == UCS_OK) queried = ucp_rkey_pack(context_, pool->memh, &packed, &packed_size);
      Status pinned = queried == UCS_OK ? PinHost(attr.address, kStageSlots * kStageChunk)
                                        : UcsError("ucp_mem_query", queried);
      if (packed != nullptr) {
        pool->rkey.assign(static_cast<const char*>(packed), packed_size);
        ucp_rkey_buffer_release(packed);
      }
      if (!pinned.ok()) {
        ucp_mem_unmap(context_, pool->memh);
        pool->memh = nullptr;
        return pinned.WithContext("ucx: staging buffers");
      }
      pool->base = attr.address;
      for (int i = kStageSlots - 1; i >= 0; --i) pool->free.push_back(i);
    }
    return OkStatus();
  }

  DeviceCopier* CopierFor(const Region& r) {
    if (r.region.kind != MemoryKind::kDevice || cuda_direct_) return nullptr;
    auto it = copiers_.find(r.region.device);
    if (it != copiers_.end()) return it->second.get();
    auto copier = DeviceCopier::Create(r.region.device);
    if (!copier.ok()) return nullptr;
    return (copiers_[r.region.device] = std::move(copier).value()).get();
  }

  // A device copy for a piece (or a served request); its ticket, or the error.
  StatusOr<uint64_t> DeviceCopy(const Region& r, void* dst, const void* src, uint64_t bytes) {
    DeviceCopier* copier = CopierFor(r);
    if (copier == nullptr) return UnavailableError("ucx: no CUDA device for staged memory");
    return copier->Copy(dst, src, bytes);
  }

  void IssueStaged(Job& job) {
    const bool local_device = job.local->memh == nullptr;
    const bool mapped = job.conn->rkey == nullptr && job.conn->peer->slots_mapped != nullptr;
    while (job.op < job.ops.size() && job.in_flight < kStageWindow) {
      // A slot of ours holds the piece on its way when our end is device memory, unless the
      // owner's slots are mapped here and our device copies reach them directly.
      const bool needs_slot = local_device && !mapped;
      if (needs_slot && request_slots_.free.empty()) return;
      const TransferOp& op = job.ops[job.op];
      const uint64_t n = std::min(kStageChunk, op.bytes - job.at);
      const uint64_t token = next_token_++;
      Piece& piece = pieces_[token];
      piece.job = &job;
      piece.local_offset = op.local_offset + job.at;
      piece.remote_offset = op.remote_offset + job.at;
      piece.bytes = n;
      if (needs_slot) {
        piece.slot = request_slots_.free.back();
        request_slots_.free.pop_back();
      }
      job.in_flight++;
      job.at += n;
      if (job.at >= op.bytes) {
        job.op++;
        job.at = 0;
      }
      Continue(token);
    }
  }

  std::byte* LocalBytes(const Piece& p) const {
    return static_cast<std::byte*>(p.job->local->region.base) + p.local_offset;
  }
  // Where the piece's bytes are in host memory on our side: our slot, or our host region.
  std::byte* OurHostBytes(const Piece& p) const {
    return p.slot >= 0 ? request_slots_.at(p.slot) : LocalBytes(p);
  }

  // Sends a header-only active message (and an error text); its storage lives until sent.
  void SendSmall(ucp_ep_h ep, AmId id, const AmHeader& header, std::string text = {}) {
    if (ep == nullptr) return;
    struct Outgoing {
      AmHeader header;
      std::string text;
    };
    auto* out = new Outgoing{header, std::move(text)};
    auto& param = Param([](void* request, ucs_status_t, void* o) {
      ucp_request_free(request);
      delete static_cast<Outgoing*>(o);
    }, out, UCP_AM_SEND_FLAG_REPLY);
    ucs_status_ptr_t r = ucp_am_send_nbx(ep, id, &out->header, sizeof out->header,
                                         out->text.data(), out->text.size(), &param);
    if (!UCS_PTR_IS_PTR(r)) delete out;  // sent already, or the peer is gone
  }

  void Fail(uint64_t token, Status s) {
    Piece& p = pieces_.at(token);
    if (!s.ok() && p.job->failure.ok()) p.job->failure = std::move(s);
  }

  // Runs the piece's next step once nothing of it is outstanding.
  void Continue(uint64_t token) {
    auto it = pieces_.find(token);
    if (it == pieces_.end()) return;
    Piece& p = it->second;
    if (p.ticket != 0 || p.request || p.answer) return;
    Job& job = *p.job;
    Peer& peer = *job.conn->peer;
    const bool read = job.direction == Direction::kRead;
    const bool remote_staged = job.conn->rkey == nullptr;
    if (!job.failure.ok()) p.step = Step::kDone;
    switch (p.step) {
      case Step::kStart:
        if (read && remote_staged) {
          p.step = Step::kMove;
          p.answer = true;
          return SendSmall(peer.ep, kAmStageOut,
                           {.token = token, .region = job.conn->remote_id,
                            .offset = p.remote_offset, .bytes = p.bytes});
        }
        p.step = remote_staged ? Step::kAskOwner : Step::kMove;
        if (!read && p.slot >= 0) {  // device → our slot first
          StatusOr<uint64_t> t = DeviceCopy(*job.local, OurHostBytes(p), LocalBytes(p), p.bytes);
          if (!t.ok()) return Fail(token, t.status()), Continue(token);
          p.ticket = *t;
          return;
        }
        return Continue(token);
      case Step::kAskOwner:
        p.step = Step::kMove;
        p.answer = true;
        return SendSmall(peer.ep, kAmSlotRequest, {.token = token});
      case Step::kMove:
        p.step = !remote_staged ? (read && p.slot >= 0 ? Step::kLast : Step::kDone)
                 : read         ? Step::kRelease
                                : Step::kTellOwner;
        return Move(token, p);
      case Step::kTellOwner:
        p.step = Step::kDone;
        p.answer = true;
        SendSmall(peer.ep, kAmStageIn,
                  {.token = token, .region = job.conn->remote_id, .offset = p.remote_offset,
                   .bytes = p.bytes, .slot = p.owner_slot});
        p.owner_slot = -1;  // the owner's again
        return;
      case Step::kRelease:
        SendSmall(peer.ep, kAmRelease, {.slot = p.owner_slot});
        p.owner_slot = -1;
        p.step = p.slot >= 0 ? Step::kLast : Step::kDone;
        return Continue(token);
      case Step::kLast: {
        p.step = Step::kDone;
        StatusOr<uint64_t> t = DeviceCopy(*job.local, LocalBytes(p), OurHostBytes(p), p.bytes);
        if (!t.ok()) return Fail(token, t.status()), Continue(token);
        p.ticket = *t;
        return;
      }
      case Step::kDone:
        if (p.owner_slot >= 0) SendSmall(peer.ep, kAmRelease, {.slot = p.owner_slot});
        if (p.slot >= 0) request_slots_.free.push_back(p.slot);
        job.in_flight--;
        pieces_.erase(it);
        return;
    }
  }

  // The bytes cross: between our memory and the owner's slot (mapped here, or by get/put), or
  // between our slot and a remote host region.
  void Move(uint64_t token, Piece& p) {
    Job& job = *p.job;
    Peer& peer = *job.conn->peer;
    const bool read = job.direction == Direction::kRead;
    const bool local_device = job.local->memh == nullptr;
    if (job.conn->rkey == nullptr && peer.slots_mapped != nullptr) {
      std::byte* theirs = peer.slots_mapped + p.owner_slot * kStageChunk;
      if (local_device) {
        StatusOr<uint64_t> t = read ? DeviceCopy(*job.local, LocalBytes(p), theirs, p.bytes)
                                    : DeviceCopy(*job.local, theirs, LocalBytes(p), p.bytes);
        if (!t.ok()) return Fail(token, t.status()), Continue(token);
        p.ticket = *t;
        return;
      }
      read ? std::memcpy(LocalBytes(p), theirs, p.bytes)
           : std::memcpy(theirs, LocalBytes(p), p.bytes);
      return Continue(token);
    }
    const bool to_slot = job.conn->rkey == nullptr;
    const uint64_t remote = to_slot ? peer.slots_base + p.owner_slot * kStageChunk
                                    : job.conn->remote_base + p.remote_offset;
    ucp_rkey_h rkey = to_slot ? peer.slots_rkey : job.conn->rkey;
    ucs_status_ptr_t r;
    if (!read && to_slot) {
      // The owner reads the slot once told: the put must be complete there, which the flush
      // after it says (the put itself is then waited for through the flush).
      ucp_request_param_t plain{};
      r = ucp_put_nbx(peer.ep, OurHostBytes(p), p.bytes, remote, rkey, &plain);
      if (UCS_PTR_IS_PTR(r)) ucp_request_free(r);
      if (!UCS_PTR_IS_ERR(r)) {
        r = ucp_ep_flush_nbx(peer.ep,
                             &Param(&UcxBackend::OnPieceRequest, reinterpret_cast<void*>(token)));
      }
    } else {
      auto& param = Param(&UcxBackend::OnPieceRequest, reinterpret_cast<void*>(token));
      r = read ? ucp_get_nbx(peer.ep, OurHostBytes(p), p.bytes, remote, rkey, &param)
               : ucp_put_nbx(peer.ep, OurHostBytes(p), p.bytes, remote, rkey, &param);
    }
    if (UCS_PTR_IS_ERR(r)) return Fail(token, RequestError(job, UCS_PTR_STATUS(r))), Continue(token);
    if (r != nullptr) {
      p.request = true;
      return;
    }
    Continue(token);
  }

  static void OnPieceRequest(void* request, ucs_status_t status, void* user_data) {
    ucp_request_free(request);
    UcxBackend* self = current_;
    const uint64_t token = reinterpret_cast<uint64_t>(user_data);
    auto it = self->pieces_.find(token);
    if (it == self->pieces_.end()) return;
    it->second.request = false;
    if (status != UCS_OK) self->Fail(token, RequestError(*it->second.job, status));
    self->Continue(token);
  }

  // The peer failed: whatever waits on it is abandoned, since UCX does not promise to complete
  // the requests of an endpoint without peer error handling. Its late callbacks find no job or
  // piece and do nothing; a dead peer sends nothing more, and a closed endpoint delivers nothing.
  void FailPieces(Peer* peer, const Status& error) {
    for (auto& job : jobs_) {
      if (job->conn->peer != peer || job->staged) continue;
      if (job->failure.ok()) job->failure = error;
      job->in_flight = 0;
    }
    std::vector<uint64_t> waiting;
    for (auto& [token, p] : pieces_) {
      if (p.job->conn->peer == peer && p.ticket == 0) waiting.push_back(token);
    }
    for (uint64_t token : waiting) {
      Piece& p = pieces_.at(token);
      p.request = p.answer = false;
      p.owner_slot = -1;  // nothing to give back to a failed peer
      Fail(token, error);
      Continue(token);
    }
  }

  void PollCopies() {
    std::vector<uint64_t> ready;
    for (auto& [token, p] : pieces_) {
      if (p.ticket == 0) continue;
      StatusOr<bool> done = CopierFor(*p.job->local)->Done(p.ticket);
      if (!done.ok() || *done) ready.push_back(token);
      if (!done.ok() && p.job->failure.ok()) p.job->failure = done.status();
    }
    for (uint64_t token : ready) {
      pieces_.at(token).ticket = 0;
      Continue(token);
    }
    for (Served& s : served_) {
      if (s.ticket == 0) continue;
      StatusOr<bool> done = CopierFor(*s.region)->Done(s.ticket);
      if (done.ok() && !*done) continue;
      s.ticket = 0;
      s.done = true;
      if (!done.ok()) {
        FreeServeSlot(s.header.slot);
        SendSmall(s.reply, kAmFail, s.header, done.status().message());
      } else if (s.kind == kAmStageOut) {
        SendSmall(s.reply, kAmStaged, s.header);  // the slot stays held until released
      } else {
        FreeServeSlot(s.header.slot);
        SendSmall(s.reply, kAmWriteAck, s.header);
      }
      s.region->users--;
    }
    std::erase_if(served_, [](const Served& s) { return s.done; });
  }

  // ---- active messages ----

  static ucs_status_t OnAm(void* arg, const void* header, size_t header_length, void* data,
                           size_t length, const ucp_am_recv_param_t* param) {
    auto* self = static_cast<AmTarget*>(arg)->self;
    const uint16_t kind = static_cast<AmTarget*>(arg)->id;
    if (header_length != sizeof(AmHeader)) return UCS_OK;  // not ours
    AmHeader h;
    std::memcpy(&h, header, sizeof h);
    if (kind == kAmStageOut || kind == kAmSlotRequest || kind == kAmStageIn ||
        kind == kAmRelease) {
      Served& s = self->served_.emplace_back();
      s.kind = kind;
      s.header = h;
      s.reply = param->reply_ep;
      return UCS_OK;
    }
    auto it = self->pieces_.find(h.token);
    if (it == self->pieces_.end()) {
      // A piece that ended meanwhile (its transfer failed): give the slot back.
      if ((kind == kAmStaged || kind == kAmSlotGranted) && param->reply_ep != nullptr) {
        self->SendSmall(param->reply_ep, kAmRelease, {.slot = h.slot});
      }
      return UCS_OK;
    }
    Piece& p = it->second;
    p.answer = false;
    if (kind == kAmFail) {
      self->Fail(h.token,
                 UnavailableError(std::string(static_cast<const char*>(data), length)));
    } else if (kind == kAmStaged || kind == kAmSlotGranted) {
      p.owner_slot = h.slot;
    }
    self->Continue(h.token);
    return UCS_OK;
  }

  void FreeServeSlot(int64_t slot) {
    if (serve_slots_.held.erase(static_cast<int>(slot)) > 0) {
      serve_slots_.free.push_back(static_cast<int>(slot));
    }
  }

  // The owner's side: takes requests in order as slots free up.
  void ServeQueued() {
    const auto now = Clock::now();
    for (auto it = serve_slots_.held.begin(); it != serve_slots_.held.end();) {
      if (now - it->second > kHeldSlotTimeout) {  // its requester vanished without a word
        serve_slots_.free.push_back(it->first);
        it = serve_slots_.held.erase(it);
      } else {
        ++it;
      }
    }
    bool waiting = false;  // requests for a slot are served in order
    for (Served& s : served_) {
      if (s.done || s.ticket != 0) continue;
      if (s.kind == kAmRelease) {
        FreeServeSlot(s.header.slot);
        s.done = true;
        continue;
      }
      if (s.kind == kAmStageOut || s.kind == kAmSlotRequest) {
        // Slots come back through the writes and releases behind it: those go on.
        waiting |= serve_slots_.free.empty();
        if (waiting) continue;
      }
      std::shared_ptr<Region> region;
      if (s.kind != kAmSlotRequest) {
        auto r = regions_.find(s.header.region);
        const uint64_t size = r == regions_.end() ? 0 : r->second->region.bytes;
        const bool slot_ok = s.kind != kAmStageIn || serve_slots_.held.contains(
                                                          static_cast<int>(s.header.slot));
        if (r == regions_.end() || !r->second->alive || s.header.offset > size ||
            s.header.bytes > size - s.header.offset || s.header.bytes > kStageChunk ||
            !slot_ok || CopierFor(*r->second) == nullptr) {
          if (s.kind == kAmStageIn) FreeServeSlot(s.header.slot);
          SendSmall(s.reply, kAmFail, s.header,
                    "ucx: the peer's region is gone or the piece is outside it");
          s.done = true;
          continue;
        }
        region = r->second;
      }
      if (s.kind != kAmStageIn) {
        s.header.slot = serve_slots_.free.back();
        serve_slots_.free.pop_back();
        serve_slots_.held[static_cast<int>(s.header.slot)] = now;
      }
      if (s.kind == kAmSlotRequest) {
        SendSmall(s.reply, kAmSlotGranted, s.header);
        s.done = true;
        continue;
      }
      auto* target = static_cast<std::byte*>(region->region.base) + s.header.offset;
      std::byte* slot = serve_slots_.at(s.header.slot);
      StatusOr<uint64_t> t = s.kind == kAmStageOut
                                 ? DeviceCopy(*region, slot, target, s.header.bytes)
                                 : DeviceCopy(*region, target, slot, s.header.bytes);
      if (!t.ok()) {
        FreeServeSlot(s.header.slot);
        SendSmall(s.reply, kAmFail, s.header, t.status().message());
        s.done = true;
        continue;
      }
      s.region = std::move(region);
      s.region->users++;
      s.ticket = *t;
    }
  }


  // The backend whose progress thread is running (callbacks of UCX carry one pointer only).
  static thread_local UcxBackend* current_;

  std::mutex mu_;
  std::deque<std::function<void()>> commands_;
  bool stop_ = false;
  int wake_fd_ = -1;
  std::thread thread_;

  // Progress thread only.
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int worker_fd_ = -1;
  bool cuda_direct_ = false;
  uint64_t instance_ = 0;
  std::string address_;
  uint64_t next_region_ = 1;
  std::unordered_map<uint64_t, std::shared_ptr<Region>> regions_;
  std::map<std::string, std::unique_ptr<Peer>> peers_;
  std::vector<std::unique_ptr<Peer>> retired_;  // failed endpoints connections still name
  std::vector<std::shared_ptr<Job>> jobs_;
  std::unordered_map<uint64_t, Job*> job_ids_;
  std::map<uint64_t, Piece> pieces_;
  uint64_t next_token_ = 1;
  std::list<Served> served_;
  Slots request_slots_, serve_slots_;
  std::map<int, std::unique_ptr<DeviceCopier>> copiers_;
  int closing_ = 0;
  std::string node_ = NodeId();
  Clock::time_point last_watch_;
  // What each active message handler is called with: UCX passes one pointer.
  struct AmTarget {
    UcxBackend* self = nullptr;
    uint16_t id = 0;
  } am_targets_[kAmFail];
};

Conn::~Conn() {
  if (backend != nullptr) backend->ConnGone(*this);
}

thread_local UcxBackend* UcxBackend::current_ = nullptr;

UcxRegistration::~UcxRegistration() { backend_->Deregister(region_); }
UcxConnection::~UcxConnection() { backend_->ReleaseConnection(std::move(conn_)); }
UcxTransfer::~UcxTransfer() { backend_->Drop(std::move(job_)); }

}  // namespace

StatusOr<std::unique_ptr<Backend>> MakeUcxBackend(const BackendOptions&) {
  auto backend = std::make_unique<UcxBackend>();
  if (Status s = backend->Start(); !s.ok()) return s;
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace tandem::transfer
