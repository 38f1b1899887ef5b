#include "transfer/nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status_macros.h"
#include "transfer/ops.h"
#include "transfer/wire.h"

namespace tandem::transfer {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMagic = 0x4c43434e;  // "NCCL"
constexpr uint32_t kProtocol = 1;
// Bounds a Connect: TCP connect, handshake and communicator set-up together.
constexpr auto kSetupTimeout = std::chrono::seconds(30);
// The registering side gives up on a group this long after the poster's deadline. By then the
// poster has aborted its side; this covers a poster that vanished without closing the connection.
constexpr auto kServingGrace = std::chrono::seconds(1);
constexpr int64_t kLongestTimeoutMs = 24 * 3600 * 1000;  // keeps a peer's "no deadline" in range
constexpr uint64_t kMaxOps = uint64_t{1} << 21;
constexpr uint32_t kMaxFrame = 24 * kMaxOps + 64;  // a request of kMaxOps ops
// A transfer goes to NCCL in groups of at most this many ops, one group in flight per connection
// (both sides split alike). NCCL's work queue (1 MiB) then always has room for the next group, so
// ncclGroupEnd never waits for the device, which with a dead peer would be for ever; and an abort
// waits for one such group at most.
constexpr size_t kChunkOps = 2048;
// How often the progress thread looks at set-ups, groups and deadlines while it has any: neither
// a CUDA event nor NCCL's asynchronous state can wake a poll().
constexpr timespec kBusyPoll{0, 50'000};

// Control frames: a u32 length, then a body whose first byte is the type.
enum FrameType : uint8_t {
  kHello = 1,  // poster → owner: magic, protocol, instance, region
  kWelcome,    // owner → poster: region bytes, ncclUniqueId
  kRequest,  // poster → owner: seq, poster sends, timeout ms, count, ops as the poster sees them
  kDone,     // owner → poster: seq, status code, message; seq 0: the connection failed
};

Status CudaError(std::string_view call, cudaError_t e) {
  return InternalError("nccl: " + std::string(call) + ": " + cudaGetErrorString(e));
}

// A remote or system error means the peer, or the way to it, failed.
Status NcclError(std::string_view call, ncclResult_t r) {
  std::string message = "nccl: " + std::string(call) + ": " + ncclGetErrorString(r);
  if (const char* last = ncclGetLastError(nullptr); last != nullptr && *last != '\0') {
    message += std::string(" (") + last + ")";
  }
  return r == ncclRemoteError || r == ncclSystemError ? UnavailableError(std::move(message))
                                                      : InternalError(std::move(message));
}

Status Errno(std::string_view what) {
  return UnavailableError("nccl: " + std::string(what) + ": " + std::strerror(errno));
}

#define TANDEM_CUDA_RETURN(call)                                                       \
  do {                                                                                 \
    if (const cudaError_t e_ = (call); e_ != cudaSuccess) return CudaError(#call, e_); \
  } while (0)

#define TANDEM_NCCL_RETURN(call)                                                        \
  do {                                                                                  \
    if (const ncclResult_t r_ = (call); r_ != ncclSuccess) return NcclError(#call, r_); \
  } while (0)

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  explicit operator bool() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Communicators are aborted, never destroyed: ncclCommDestroy may wait for the peer, and abort
// stops whatever of ours still runs on the device.
struct CommAbort {
  void operator()(ncclComm_t comm) const {
    if (const ncclResult_t r = ncclCommAbort(comm); r != ncclSuccess) {
      spdlog::warn("nccl communicator abort failed error=\"{}\"", ncclGetErrorString(r));
    }
  }
};
using Comm = std::unique_ptr<ncclComm, CommAbort>;
// A failed destroy leaves nothing to do.
struct StreamDestroy {
  void operator()(cudaStream_t stream) const { (void)cudaStreamDestroy(stream); }
};
using Stream = std::unique_ptr<CUstream_st, StreamDestroy>;
struct EventDestroy {
  void operator()(cudaEvent_t event) const { (void)cudaEventDestroy(event); }
};
using Event = std::unique_ptr<CUevent_st, EventDestroy>;

// --- Sockets. The set-up blocks its caller (with a deadline); the progress thread never blocks.

void NoDelay(int fd) {
  const int one = 1;
  // Only latency depends on it: control frames are small.
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Status WaitFor(int fd, short events, Clock::time_point deadline, std::string_view what) {
  while (true) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return UnavailableError("nccl: " + std::string(what) + ": no answer within the set-up time");
    }
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n > 0) return OkStatus();
    if (n < 0 && errno != EINTR) return Errno(what);
  }
}

StatusOr<Fd> Listen(const std::string& host, uint16_t& port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int e = getaddrinfo(host.c_str(), "0", &hints, &found); e != 0) {
    return InvalidArgumentError("nccl: control host \"" + host + "\": " + gai_strerror(e));
  }
  const std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, freeaddrinfo);
  Status last = InvalidArgumentError("nccl: control host \"" + host + "\": no address");
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    Fd fd(socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      last = Errno("socket");
      continue;
    }
    sockaddr_storage bound{};
    socklen_t size = sizeof bound;
    if (bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || listen(fd.get(), 128) != 0 ||
        getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &size) != 0) {
      last = Errno("listen on \"" + host + "\"");
      continue;
    }
    port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    return fd;
  }
  return last;
}

StatusOr<Fd> Dial(const std::string& host, uint16_t port, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  const std::string where = host + ":" + std::to_string(port);
  addrinfo* found = nullptr;
  if (const int e = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
      e != 0) {
    return UnavailableError("nccl: the peer's control address " + where + ": " + gai_strerror(e));
  }
  const std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, freeaddrinfo);
  Status last = UnavailableError("nccl: the peer's control address " + where + ": no address");
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    Fd fd(socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      last = Errno("socket");
      continue;
    }
    if (connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = Errno("connect to " + where);
      continue;
    }
    if (Status s = WaitFor(fd.get(), POLLOUT, deadline, "connect to " + where); !s.ok()) {
      last = s;
      continue;
    }
    int error = 0;
    socklen_t size = sizeof error;
    if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &size) != 0 || error != 0) {
      if (error != 0) errno = error;
      last = Errno("connect to " + where);
      continue;
    }
    NoDelay(fd.get());
    return fd;
  }
  return last;
}

Status SendAll(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      TANDEM_RETURN_IF_ERROR(WaitFor(fd, POLLOUT, deadline, "send to the peer"));
    } else if (errno != EINTR) {
      return Errno("send to the peer");
    }
  }
  return OkStatus();
}

// Reads exactly `n` bytes: nothing past the frame, which the progress thread reads later.
Status RecvExactly(int fd, char* out, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    const ssize_t got = recv(fd, out, n, 0);
    if (got > 0) {
      out += got;
      n -= static_cast<size_t>(got);
    } else if (got == 0) {
      return UnavailableError("nccl: the peer closed the control connection");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      TANDEM_RETURN_IF_ERROR(WaitFor(fd, POLLIN, deadline, "receive from the peer"));
    } else if (errno != EINTR) {
      return Errno("receive from the peer");
    }
  }
  return OkStatus();
}

std::string Frame(std::string_view body) { return wire::Writer().PutBytes(body).Take(); }

StatusOr<std::string> RecvFrame(int fd, Clock::time_point deadline) {
  uint32_t n = 0;
  TANDEM_RETURN_IF_ERROR(RecvExactly(fd, reinterpret_cast<char*>(&n), sizeof n, deadline));
  if (n > kMaxFrame) return UnavailableError("nccl: an oversized control frame from the peer");
  std::string body(n, '\0');
  TANDEM_RETURN_IF_ERROR(RecvExactly(fd, body.data(), n, deadline));
  return body;
}

std::string DoneFrame(uint64_t seq, const Status& status) {
  wire::Writer w;
  w.Put(kDone).Put(seq).Put(static_cast<uint32_t>(status.code())).PutBytes(status.message());
  return Frame(w.Take());
}

Status PeerStatus(uint32_t code, const std::string& message) {
  const bool known = code > 0 && code <= static_cast<uint32_t>(StatusCode::kUnauthenticated);
  return Status(known ? static_cast<StatusCode>(code) : StatusCode::kUnknown,
                "from the peer: " + message);
}

// What a descriptor carries.
struct Described {
  uint64_t instance = 0;  // the backend's, random: a later backend on the same port differs
  uint64_t region = 0;
  uint64_t bytes = 0;
  uint16_t port = 0;
  std::string host;
};

std::string Encode(const Described& d) {
  wire::Writer w;
  w.Put(kMagic).Put(d.instance).Put(d.region).Put(d.bytes).Put(d.port).PutBytes(d.host);
  return w.Take();
}

bool Decode(std::string_view bytes, Described& d) {
  wire::Reader r(bytes);
  uint32_t magic = 0;
  return r.Get(magic) && magic == kMagic && r.Get(d.instance) && r.Get(d.region) &&
         r.Get(d.bytes) && r.Get(d.port) && r.GetBytes(d.host) && r.done() && !d.host.empty() &&
         d.port != 0;
}

// --- Transfers and connections, as the progress thread sees them.

// What a transfer handle and the progress thread share; shared because either may let go last.
struct Job {
  std::mutex mu;
  std::condition_variable cv;
  TransferState state = TransferState::kPending;  // guarded by mu
  Status error;                                   // guarded by mu
  bool in_flight = false;  // guarded by mu: its group is issued, so bytes may still move
};

// Gives a job its outcome, unless a cancel gave it one already.
void Conclude(Job& job, const Status& status) {
  std::lock_guard lock(job.mu);
  if (job.state == TransferState::kPending) {
    job.state = status.ok() ? TransferState::kDone : TransferState::kError;
    job.error = status;
  }
}

// Nothing of the job moves any more: its handle may go.
void Release(Job& job) {
  std::lock_guard lock(job.mu);
  job.in_flight = false;
  job.cv.notify_all();
}

void Finish(Job& job, const Status& status) {
  Conclude(job, status);
  Release(job);
}

// One side's half of a transfer: a group of sends or receives on this side's memory.
struct Group {
  std::shared_ptr<Job> job;  // the poster's; null on the owner's side
  uint64_t seq = 0;          // the poster numbers its requests 1, 2, 3… per connection
  uint64_t region = 0;       // the registration `base` belongs to
  std::byte* base = nullptr;
  std::vector<TransferOp> ops;  // as this side sees them (local_offset into `base`); none empty
  bool sends = false;
  Clock::time_point deadline;
  size_t issued_ops = 0;  // ops handed to NCCL so far, kChunkOps at a time
  Event done;             // recorded after each chunk, once NCCL has enqueued it
  bool recorded = false;  // after the latest chunk
  bool local_done = false;
  bool peer_done = false;  // the owner's answer; the owner's own groups start with it
};

std::string RequestFrame(const Group& g, Clock::time_point now) {
  const auto timeout = std::chrono::ceil<std::chrono::milliseconds>(g.deadline - now).count();
  wire::Writer w;
  w.Put(kRequest).Put(g.seq).Put(static_cast<uint8_t>(g.sends));
  w.Put(static_cast<int64_t>(std::max<int64_t>(0, timeout)))
      .Put(static_cast<uint64_t>(g.ops.size()));
  for (const TransferOp& op : g.ops) w.Put(op.local_offset).Put(op.remote_offset).Put(op.bytes);
  return Frame(w.Take());
}

// True once all the work recorded on `event` has run.
StatusOr<bool> Reached(cudaEvent_t event) {
  const cudaError_t e = cudaEventQuery(event);
  if (e == cudaErrorNotReady) return false;
  if (e != cudaSuccess) return CudaError("cudaEventQuery", e);
  return true;
}

// Connect waits on it until the communicator is ready or the set-up failed.
struct Setup {
  std::latch done{1};
  Status status;
};

// One control connection and its communicator, on either side.
struct Channel {
  enum class Phase { kHello, kInit, kReady };

  uint64_t id = 0;
  bool serving = false;  // the owner's side: rank 1, answers requests for `region`
  Phase phase = Phase::kHello;
  Clock::time_point setup_deadline;
  Setup* setup = nullptr;  // the poster's side until the set-up ends
  Fd fd;
  std::string in, out;  // control bytes received and not yet parsed; to send
  Comm comm;
  Stream stream;
  uint64_t region = 0;  // serving: the region, and its memory
  MemoryRegion memory;
  std::deque<Group> waiting;  // not yet issued
  std::deque<Group> issued;   // in stream order
  bool enqueuing = false;     // the latest chunk's ncclGroupEnd is still in progress
  uint64_t next_seq = 1;
  bool broken = false;
};

// The backend's state and its progress thread. Shared by the backend and its handles, which may
// outlive it; everything stops with the backend.
class Engine {
 public:
  static StatusOr<std::shared_ptr<Engine>> Create();
  Engine(std::string host, Fd listener, uint16_t port, Fd wake, uint64_t instance)
      : host_(std::move(host)),
        port_(port),
        instance_(instance),
        listener_(std::move(listener)),
        wake_(std::move(wake)),
        thread_([this] { Loop(); }) {}
  ~Engine() { Stop(); }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Aborts every connection and joins the thread; handles then fail or do nothing.
  void Stop();

  StatusOr<uint64_t> AddRegion(const MemoryRegion& region);
  // Returns once no byte moves into or out of the region any more.
  void RemoveRegion(uint64_t id);
  RemoteDescriptor Describe(uint64_t id, size_t bytes) const {
    return {"nccl", Encode({instance_, id, bytes, port_, host_})};
  }

  struct Connected {
    uint64_t channel = 0;
    uint64_t remote_bytes = 0;
  };
  StatusOr<Connected> Connect(const Described& peer);
  // Aborts the connection; returns once nothing of it moves any more.
  void Close(uint64_t channel);
  // Unavailable when the connection is broken.
  Status Submit(uint64_t channel, Group group);

 private:
  bool Run(std::function<void()> fn);  // on the progress thread; false once stopping
  void Wake();
  void Loop();
  void Accept();
  void Read(Channel& ch);
  Status Flush(Channel& ch);
  Status OnFrame(Channel& ch, std::string_view body);
  Status OnHello(Channel& ch, wire::Reader& r);
  Status OnRequest(Channel& ch, wire::Reader& r);
  Status OnDone(Channel& ch, wire::Reader& r);
  Status StartInit(Channel& ch, const ncclUniqueId& id, int rank);
  Status Pump(Channel& ch);
  Status Issue(Channel& ch);
  Status Record(Channel& ch, Group& g);
  void Break(Channel& ch, const Status& reason);

  const std::string host_;
  const uint16_t port_;
  const uint64_t instance_;
  const Fd listener_, wake_;
  std::atomic<int> device_{-1};  // set by the first registration
  std::atomic<uint64_t> next_channel_{1};

  std::mutex mu_;
  bool stopping_ = false;                                // guarded by mu_
  std::vector<std::function<void()>> inbox_;             // guarded by mu_
  std::vector<std::pair<uint64_t, Group>> submitted_;    // guarded by mu_
  std::unordered_map<uint64_t, MemoryRegion> regions_;   // guarded by mu_
  uint64_t next_region_ = 1;                             // guarded by mu_
  std::unordered_map<uint64_t, Status> channel_status_;  // guarded by mu_; the poster's channels

  // The progress thread's alone.
  std::unordered_map<uint64_t, std::unique_ptr<Channel>> channels_;
  std::thread thread_;
};

StatusOr<std::shared_ptr<Engine>> Engine::Create() {
  const char* env = std::getenv("TANDEM_NCCL_CONTROL_HOST");
  const bool from_env = env != nullptr && *env != '\0';
  const std::string host = from_env ? env : "127.0.0.1";
  uint16_t port = 0;
  StatusOr<Fd> listener = Listen(host, port);
  if (!listener.ok()) {
    return from_env ? listener.status().WithContext("TANDEM_NCCL_CONTROL_HOST") : listener.status();
  }
  Fd wake(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake) return Errno("eventfd");
  uint64_t instance = 0;
  if (getrandom(&instance, sizeof instance, 0) != static_cast<ssize_t>(sizeof instance)) {
    return Errno("getrandom");
  }
  return std::make_shared<Engine>(host, std::move(*listener), port, std::move(wake), instance);
}

void Engine::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
}

bool Engine::Run(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    inbox_.push_back(std::move(fn));
  }
  Wake();
  return true;
}

void Engine::Wake() {
  const uint64_t one = 1;
  // Fails only when the counter is full, which wakes the thread as well.
  [[maybe_unused]] const ssize_t n = write(wake_.get(), &one, sizeof one);
}

StatusOr<uint64_t> Engine::AddRegion(const MemoryRegion& region) {
  int device = -1;
  if (!device_.compare_exchange_strong(device, region.device) && device != region.device) {
    return InvalidArgumentError("nccl: this backend drives device " + std::to_string(device) +
                                "; memory of device " + std::to_string(region.device) +
                                " needs a backend of its own (NCCL: one GPU per rank)");
  }
  std::lock_guard lock(mu_);
  const uint64_t id = next_region_++;
  regions_.emplace(id, region);
  return id;
}

void Engine::RemoveRegion(uint64_t id) {
  {
    std::lock_guard lock(mu_);
    regions_.erase(id);  // no new connection reaches it
  }
  std::latch done(1);
  const bool queued = Run([&] {
    for (auto& [channel_id, ch] : channels_) {
      if (ch->serving) {
        if (ch->region == id) Break(*ch, UnavailableError("nccl: the region is gone"));
        continue;
      }
      const Status dropped = CancelledError("nccl: the local registration was dropped");
      std::erase_if(ch->waiting, [&](Group& g) {
        if (g.region != id) return false;
        Finish(*g.job, dropped);
        return true;
      });
      // A group in flight cannot be stopped alone.
      if (std::any_of(ch->issued.begin(), ch->issued.end(),
                      [&](const Group& g) { return g.region == id; })) {
        Break(*ch, dropped);
      }
    }
    done.count_down();
  });
  if (queued) done.wait();
}

StatusOr<Engine::Connected> Engine::Connect(const Described& peer) {
  if (peer.instance == instance_) {
    return FailedPreconditionError(
        "nccl: a backend cannot connect to its own region: NCCL needs one GPU per rank, so the "
        "two ends are two backends");
  }
  if (device_.load() < 0) {
    return FailedPreconditionError(
        "nccl: register this backend's device memory before connecting: the connection's "
        "communicator lives on that GPU");
  }
  const auto deadline = Clock::now() + kSetupTimeout;
  TANDEM_ASSIGN_OR_RETURN(Fd fd, Dial(peer.host, peer.port, deadline));
  wire::Writer hello;
  hello.Put(kHello).Put(kMagic).Put(kProtocol).Put(peer.instance).Put(peer.region);
  TANDEM_RETURN_IF_ERROR(SendAll(fd.get(), Frame(hello.Take()), deadline));
  TANDEM_ASSIGN_OR_RETURN(const std::string reply, RecvFrame(fd.get(), deadline));
  wire::Reader r(reply);
  uint8_t type = 0;
  uint64_t seq = 0, remote_bytes = 0;
  uint32_t code = 0;
  std::string message;
  ncclUniqueId id{};
  if (r.Get(type) && type == kDone && r.Get(seq) && r.Get(code) && r.GetBytes(message) &&
      code != 0) {
    return PeerStatus(code, message);
  }
  if (type != kWelcome || !r.Get(remote_bytes) || !r.Get(id) || !r.done()) {
    return UnavailableError("nccl: the peer answered the hello with garbage");
  }

  Setup setup;
  const uint64_t channel = next_channel_++;
  const int raw = fd.release();  // std::function needs a copyable capture
  const bool queued = Run([this, &setup, raw, channel, id, deadline] {
    auto owned = std::make_unique<Channel>();
    Channel& ch = *owned;
    ch.id = channel;
    ch.fd = Fd(raw);
    ch.setup = &setup;
    ch.setup_deadline = deadline;
    channels_.emplace(channel, std::move(owned));
    {
      std::lock_guard lock(mu_);
      channel_status_.emplace(channel, OkStatus());
    }
    if (Status s = StartInit(ch, id, /*rank=*/0); !s.ok()) Break(ch, s);
  });
  if (!queued) {
    close(raw);
    return UnavailableError("nccl: the backend is shutting down");
  }
  setup.done.wait();
  if (!setup.status.ok()) {
    std::lock_guard lock(mu_);
    channel_status_.erase(channel);
    return setup.status;
  }
  return Connected{channel, remote_bytes};
}

void Engine::Close(uint64_t channel) {
  std::latch done(1);
  const bool queued = Run([&] {
    if (auto it = channels_.find(channel); it != channels_.end()) {
      Break(*it->second, CancelledError("nccl: the connection was dropped"));
    }
    done.count_down();
  });
  if (queued) done.wait();
  std::lock_guard lock(mu_);
  channel_status_.erase(channel);
}

Status Engine::Submit(uint64_t channel, Group group) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return UnavailableError("nccl: the backend was destroyed");
    const auto it = channel_status_.find(channel);
    if (it == channel_status_.end()) return UnavailableError("nccl: the connection is closed");
    if (!it->second.ok()) {
      return Status(StatusCode::kUnavailable, "nccl: the connection is broken (" +
                                                  it->second.ToString() + "); connect again");
    }
    submitted_.emplace_back(channel, std::move(group));
  }
  Wake();
  return OkStatus();
}

void Engine::Loop() {
  std::vector<pollfd> fds;
  std::vector<Channel*> polled;
  while (true) {
    std::vector<std::pair<uint64_t, Group>> submitted;
    std::vector<std::function<void()>> work;
    bool stop = false;
    {
      std::lock_guard lock(mu_);
      submitted.swap(submitted_);
      work.swap(inbox_);
      stop = stopping_;
    }
    // Submissions first: a Close that follows a Post on the same connection comes after it.
    for (auto& [channel, group] : submitted) {
      const auto it = channels_.find(channel);
      if (it == channels_.end() || it->second->broken) {
        Finish(*group.job, UnavailableError("nccl: the connection is broken; connect again"));
      } else {
        it->second->waiting.push_back(std::move(group));
      }
    }
    for (auto& fn : work) fn();
    if (stop) break;

    fds.assign({{wake_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}});
    polled.clear();
    bool busy = false;
    for (auto& [id, ch] : channels_) {
      const short events = ch->out.empty() ? POLLIN : POLLIN | POLLOUT;
      fds.push_back({ch->fd.get(), events, 0});
      polled.push_back(ch.get());
      busy = busy || ch->phase != Channel::Phase::kReady || !ch->waiting.empty() ||
             !ch->issued.empty();
    }
    if (ppoll(fds.data(), fds.size(), busy ? &kBusyPoll : nullptr, nullptr) < 0 && errno != EINTR) {
      spdlog::warn("nccl progress poll failed error=\"{}\"", std::strerror(errno));
    }
    if (fds[0].revents != 0) {
      uint64_t wakes = 0;
      while (read(wake_.get(), &wakes, sizeof wakes) > 0) {
      }
    }
    if (fds[1].revents != 0) Accept();
    for (size_t i = 0; i < polled.size(); ++i) {
      if ((fds[i + 2].revents & (POLLIN | POLLHUP | POLLERR)) != 0) Read(*polled[i]);
    }
    for (auto& [id, ch] : channels_) {
      if (!ch->broken) {
        if (Status s = Pump(*ch); !s.ok()) Break(*ch, s);
      }
      if (!ch->broken && !ch->out.empty()) {
        if (Status s = Flush(*ch); !s.ok()) Break(*ch, s);
      }
    }
    std::erase_if(channels_, [](const auto& entry) { return entry.second->broken; });
  }
  for (auto& [id, ch] : channels_) Break(*ch, UnavailableError("nccl: the backend was destroyed"));
  channels_.clear();
}

void Engine::Accept() {
  while (true) {
    const int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        spdlog::warn("nccl control accept failed error=\"{}\"", std::strerror(errno));
      }
      return;
    }
    NoDelay(fd);
    auto ch = std::make_unique<Channel>();
    ch->id = next_channel_++;
    ch->serving = true;
    ch->fd = Fd(fd);
    ch->setup_deadline = Clock::now() + kSetupTimeout;
    const uint64_t id = ch->id;
    channels_.emplace(id, std::move(ch));
  }
}

void Engine::Read(Channel& ch) {
  // Frames first, the end of the stream after: a peer's last words say why it left.
  Status closed;
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = recv(ch.fd.get(), buffer, sizeof buffer, 0);
    if (n > 0) {
      ch.in.append(buffer, static_cast<size_t>(n));
    } else if (n == 0) {
      closed = UnavailableError("nccl: the peer closed the control connection");
      break;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      break;
    } else if (errno != EINTR) {
      closed = Errno("receive from the peer");
      break;
    }
  }
  size_t at = 0;
  while (!ch.broken && ch.in.size() - at >= sizeof(uint32_t)) {
    uint32_t n = 0;
    std::memcpy(&n, ch.in.data() + at, sizeof n);
    if (n > kMaxFrame) {
      Break(ch, UnavailableError("nccl: an oversized control frame from the peer"));
      break;
    }
    if (ch.in.size() - at - sizeof n < n) break;
    if (Status s = OnFrame(ch, std::string_view(ch.in).substr(at + sizeof n, n)); !s.ok()) {
      Break(ch, s);
    }
    at += sizeof n + n;
  }
  ch.in.erase(0, at);
  if (!closed.ok()) Break(ch, closed);
}

Status Engine::Flush(Channel& ch) {
  while (!ch.out.empty()) {
    const ssize_t n = send(ch.fd.get(), ch.out.data(), ch.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      ch.out.erase(0, static_cast<size_t>(n));
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return OkStatus();  // the rest when poll() says the socket takes more
    } else if (errno != EINTR) {
      return Errno("send to the peer");
    }
  }
  return OkStatus();
}

Status Engine::OnFrame(Channel& ch, std::string_view body) {
  wire::Reader r(body);
  uint8_t type = 0;
  if (r.Get(type)) {
    if (ch.serving && ch.phase == Channel::Phase::kHello && type == kHello) return OnHello(ch, r);
    if (ch.serving && ch.phase != Channel::Phase::kHello && type == kRequest) {
      return OnRequest(ch, r);
    }
    if (!ch.serving && type == kDone) return OnDone(ch, r);
  }
  return UnavailableError("nccl: an unexpected control frame from the peer");
}

Status Engine::OnHello(Channel& ch, wire::Reader& r) {
  uint32_t magic = 0, protocol = 0;
  uint64_t instance = 0, region = 0;
  if (!r.Get(magic) || !r.Get(protocol) || !r.Get(instance) || !r.Get(region) || !r.done() ||
      magic != kMagic) {
    return UnavailableError("nccl: a malformed hello");
  }
  if (protocol != kProtocol) {
    return FailedPreconditionError("nccl: the peer speaks protocol " + std::to_string(protocol) +
                                   ", this backend " + std::to_string(kProtocol));
  }
  if (instance != instance_) {
    return UnavailableError("nccl: the region is gone (its backend no longer listens here)");
  }
  {
    std::lock_guard lock(mu_);
    const auto it = regions_.find(region);
    if (it == regions_.end()) return UnavailableError("nccl: the region is gone");
    ch.memory = it->second;
  }
  ch.region = region;
  // The unique id is made here, after the checks: its bootstrap root waits for both ranks.
  ncclUniqueId id;
  TANDEM_NCCL_RETURN(ncclGetUniqueId(&id));
  wire::Writer welcome;
  welcome.Put(kWelcome).Put(static_cast<uint64_t>(ch.memory.bytes)).Put(id);
  ch.out += Frame(welcome.Take());
  ch.setup_deadline = Clock::now() + kSetupTimeout;
  return StartInit(ch, id, /*rank=*/1);
}

Status Engine::OnRequest(Channel& ch, wire::Reader& r) {
  Group g;
  uint8_t poster_sends = 0;
  int64_t timeout_ms = 0;
  uint64_t count = 0;
  if (!r.Get(g.seq) || !r.Get(poster_sends) || !r.Get(timeout_ms) || !r.Get(count) ||
      count > kMaxOps) {
    return UnavailableError("nccl: a malformed request");
  }
  g.ops.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    TransferOp poster;
    if (!r.Get(poster.local_offset) || !r.Get(poster.remote_offset) || !r.Get(poster.bytes)) {
      return UnavailableError("nccl: a malformed request");
    }
    // The poster checked its ops against the size the welcome gave; a peer that did not is
    // refused, and since its half is issued already, the connection with it.
    if (poster.remote_offset > ch.memory.bytes ||
        poster.bytes > ch.memory.bytes - poster.remote_offset || poster.bytes == 0) {
      return InvalidArgumentError("nccl: a request with an empty op or one outside the region");
    }
    g.ops.push_back({.local_offset = poster.remote_offset,
                     .remote_offset = poster.local_offset,
                     .bytes = poster.bytes});
  }
  if (!r.done()) return UnavailableError("nccl: a malformed request");
  g.region = ch.region;
  g.base = static_cast<std::byte*>(ch.memory.base);
  g.sends = poster_sends == 0;
  g.deadline = Clock::now() +
               std::chrono::milliseconds(std::clamp<int64_t>(timeout_ms, 0, kLongestTimeoutMs)) +
               kServingGrace;
  g.peer_done = true;
  ch.waiting.push_back(std::move(g));
  return OkStatus();
}

Status Engine::OnDone(Channel& ch, wire::Reader& r) {
  uint64_t seq = 0;
  uint32_t code = 0;
  std::string message;
  if (!r.Get(seq) || !r.Get(code) || !r.GetBytes(message) || !r.done()) {
    return UnavailableError("nccl: a malformed answer");
  }
  if (code != 0) return PeerStatus(code, message);
  // The owner answers in request order.
  const auto it =
      std::find_if(ch.issued.begin(), ch.issued.end(), [](const Group& g) { return !g.peer_done; });
  if (it == ch.issued.end() || it->seq != seq) {
    return UnavailableError("nccl: an answer for transfer " + std::to_string(seq) +
                            ", which is not the next one");
  }
  it->peer_done = true;
  return OkStatus();
}

Status Engine::StartInit(Channel& ch, const ncclUniqueId& id, int rank) {
  TANDEM_CUDA_RETURN(cudaSetDevice(device_.load()));
  cudaStream_t stream = nullptr;
  TANDEM_CUDA_RETURN(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ch.stream.reset(stream);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // a peer that never joins must not hold the progress thread
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRankConfig(&comm, 2, id, rank, &config);
  ch.comm.reset(comm);
  if (r != ncclSuccess && r != ncclInProgress) return NcclError("ncclCommInitRankConfig", r);
  ch.phase = Channel::Phase::kInit;
  return OkStatus();
}

// Moves a channel on: set-up, an enqueued chunk, finished groups, deadlines, the next chunk.
Status Engine::Pump(Channel& ch) {
  const auto now = Clock::now();
  if (ch.phase == Channel::Phase::kHello) {
    return now > ch.setup_deadline ? UnavailableError("nccl: no hello from the peer") : OkStatus();
  }
  ncclResult_t state = ncclSuccess;
  TANDEM_NCCL_RETURN(ncclCommGetAsyncError(ch.comm.get(), &state));
  if (state != ncclSuccess && state != ncclInProgress) return NcclError("communicator", state);
  if (ch.phase == Channel::Phase::kInit) {
    if (state == ncclInProgress) {
      return now > ch.setup_deadline
                 ? UnavailableError("nccl: the communicator with the peer was not set up in time")
                 : OkStatus();
    }
    ch.phase = Channel::Phase::kReady;
    if (ch.setup != nullptr) {
      ch.setup->done.count_down();
      ch.setup = nullptr;
    }
  }
  if (ch.enqueuing && state == ncclSuccess) {
    ch.enqueuing = false;
    TANDEM_RETURN_IF_ERROR(Record(ch, ch.issued.back()));
  }
  while (!ch.issued.empty()) {
    Group& g = ch.issued.front();
    if (!g.local_done) {
      if (g.issued_ops < g.ops.size() || !g.recorded) break;
      TANDEM_ASSIGN_OR_RETURN(g.local_done, Reached(g.done.get()));
      if (!g.local_done) break;
    }
    if (!g.peer_done) break;
    if (ch.serving) {
      ch.out += DoneFrame(g.seq, OkStatus());
    } else {
      Finish(*g.job, OkStatus());
    }
    ch.issued.pop_front();
  }
  for (const Group& g : ch.issued) {
    if (now > g.deadline) {
      return UnavailableError(
          "nccl: the connection was aborted: a transfer on it ran past its deadline");
    }
  }
  if (ch.serving) {
    for (const Group& g : ch.waiting) {
      if (now > g.deadline) return UnavailableError("nccl: the peer's transfer ran out of time");
    }
  } else {
    // Not sent yet, so the peer never hears of it.
    std::erase_if(ch.waiting, [&](Group& g) {
      if (now <= g.deadline) return false;
      Finish(*g.job, DeadlineExceededError("nccl: transfer past its deadline"));
      return true;
    });
  }
  if (state != ncclSuccess || ch.enqueuing) return OkStatus();
  if (!ch.issued.empty()) {  // the stream is idle once the latest chunk has run
    TANDEM_ASSIGN_OR_RETURN(const bool idle, Reached(ch.issued.back().done.get()));
    if (!idle) return OkStatus();
  }
  return Issue(ch);
}

// Issues the next chunk: of the latest group, or else of the next group not cancelled.
Status Engine::Issue(Channel& ch) {
  while (ch.issued.empty() || ch.issued.back().issued_ops == ch.issued.back().ops.size()) {
    if (ch.waiting.empty()) return OkStatus();
    Group g = std::move(ch.waiting.front());
    ch.waiting.pop_front();
    if (!ch.serving) {
      {
        std::lock_guard lock(g.job->mu);
        if (g.job->state != TransferState::kPending) continue;  // cancelled before it was sent
        g.job->in_flight = true;
      }
      g.seq = ch.next_seq++;
      ch.out += RequestFrame(g, Clock::now());
    }
    ch.issued.push_back(std::move(g));
  }
  Group& g = ch.issued.back();
  const size_t begin = g.issued_ops;
  g.issued_ops = std::min(begin + kChunkOps, g.ops.size());
  g.recorded = false;
  const int peer = ch.serving ? 0 : 1;
  ncclResult_t r = ncclGroupStart();
  if (r != ncclSuccess) return NcclError("ncclGroupStart", r);
  for (size_t i = begin; i < g.issued_ops && r == ncclSuccess; ++i) {
    std::byte* at = g.base + g.ops[i].local_offset;
    const size_t n = g.ops[i].bytes;
    r = g.sends ? ncclSend(at, n, ncclInt8, peer, ch.comm.get(), ch.stream.get())
                : ncclRecv(at, n, ncclInt8, peer, ch.comm.get(), ch.stream.get());
  }
  // Closed even after a failed call: the group state is the thread's, not the communicator's.
  const ncclResult_t end = ncclGroupEnd();
  if (r != ncclSuccess) return NcclError(g.sends ? "ncclSend" : "ncclRecv", r);
  if (end == ncclInProgress) {  // NCCL connects the peers first, in the background
    ch.enqueuing = true;
    return OkStatus();
  }
  if (end != ncclSuccess) return NcclError("ncclGroupEnd", end);
  return Record(ch, g);
}

Status Engine::Record(Channel& ch, Group& g) {
  // An abort's clean-up may have left another device current on this thread.
  TANDEM_CUDA_RETURN(cudaSetDevice(device_.load()));
  if (g.done == nullptr) {
    cudaEvent_t event = nullptr;
    TANDEM_CUDA_RETURN(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    g.done.reset(event);
  }
  TANDEM_CUDA_RETURN(cudaEventRecord(g.done.get(), ch.stream.get()));
  g.recorded = true;
  return OkStatus();
}

// Ends every transfer on the channel (DeadlineExceeded for those past their deadline, `reason`
// for the others), aborts the communicator, and waits until its kernels have stopped. The
// outcomes come first, so that a transfer reports its deadline on time; its handle waits for the
// abort.
void Engine::Break(Channel& ch, const Status& reason) {
  if (ch.broken) return;
  ch.broken = true;
  if (!ch.serving) {  // before the outcomes: a Post after them sees the connection broken
    std::lock_guard lock(mu_);
    if (const auto it = channel_status_.find(ch.id); it != channel_status_.end()) {
      it->second = reason;
    }
  }
  const auto now = Clock::now();
  for (const std::deque<Group>* groups : {&ch.waiting, &ch.issued}) {
    for (const Group& g : *groups) {
      if (g.job == nullptr) continue;
      Conclude(*g.job, now > g.deadline ? DeadlineExceededError("nccl: transfer past its deadline")
                                        : reason);
    }
  }
  if (ch.serving && ch.fd) {
    // Best effort, and before the abort: the poster hears why before NCCL reports a lost peer.
    ch.out += DoneFrame(0, reason);
    [[maybe_unused]] const ssize_t n =
        send(ch.fd.get(), ch.out.data(), ch.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  ch.comm.reset();
  if (ch.stream != nullptr) {
    if (const cudaError_t e = cudaStreamSynchronize(ch.stream.get()); e != cudaSuccess) {
      spdlog::warn("nccl stream did not drain after an abort error=\"{}\"", cudaGetErrorString(e));
    }
  }
  for (std::deque<Group>* groups : {&ch.waiting, &ch.issued}) {
    for (Group& g : *groups) {
      if (g.job != nullptr) Release(*g.job);
    }
    groups->clear();
  }
  ch.fd.reset();
  if (ch.setup != nullptr) {
    ch.setup->status = reason;
    ch.setup->done.count_down();
    ch.setup = nullptr;
  }
}

// --- Handles.

class NcclRegistration final : public Registration {
 public:
  NcclRegistration(std::shared_ptr<Engine> engine, uint64_t id, const MemoryRegion& region)
      : engine_(std::move(engine)),
        id_(id),
        region_(region),
        descriptor_(engine_->Describe(id, region.bytes)) {}
  ~NcclRegistration() override { engine_->RemoveRegion(id_); }
  const MemoryRegion& region() const override { return region_; }
  const RemoteDescriptor& descriptor() const override { return descriptor_; }
  const Engine* engine() const { return engine_.get(); }
  uint64_t id() const { return id_; }

 private:
  const std::shared_ptr<Engine> engine_;
  const uint64_t id_;
  const MemoryRegion region_;
  const RemoteDescriptor descriptor_;
};

class NcclConnection final : public Connection {
 public:
  NcclConnection(std::shared_ptr<Engine> engine, uint64_t channel, uint64_t remote_bytes)
      : engine_(std::move(engine)), channel_(channel), remote_bytes_(remote_bytes) {}
  ~NcclConnection() override { engine_->Close(channel_); }
  size_t remote_bytes() const override { return remote_bytes_; }
  const Engine* engine() const { return engine_.get(); }
  uint64_t channel() const { return channel_; }

 private:
  const std::shared_ptr<Engine> engine_;
  const uint64_t channel_;
  const uint64_t remote_bytes_;
};

class NcclTransfer final : public Transfer {
 public:
  explicit NcclTransfer(std::shared_ptr<Job> job) : job_(std::move(job)) {}
  ~NcclTransfer() override {
    Cancel();
    // An issued group runs to its end (or to its connection's abort); no byte moves after that.
    std::unique_lock lock(job_->mu);
    job_->cv.wait(lock, [&] { return !job_->in_flight; });
  }
  TransferState Poll() override {
    std::lock_guard lock(job_->mu);
    return job_->state;
  }
  Status status() const override {
    std::lock_guard lock(job_->mu);
    return job_->error;
  }
  void Cancel() override {
    std::lock_guard lock(job_->mu);
    if (job_->state == TransferState::kPending) {
      job_->state = TransferState::kError;
      job_->error = CancelledError("transfer cancelled");
    }
  }

 private:
  const std::shared_ptr<Job> job_;
};

class NcclBackend final : public Backend {
 public:
  explicit NcclBackend(std::shared_ptr<Engine> engine) : engine_(std::move(engine)) {}
  ~NcclBackend() override { engine_->Stop(); }

  std::string_view name() const override { return "nccl"; }
  Capabilities capabilities() const override {
    return {.host_memory = false,
            .device_memory = true,
            .same_process_only = false,
            .same_node_only = false};
  }

  StatusOr<std::unique_ptr<Registration>> Register(const MemoryRegion& region) override {
    if (region.kind != MemoryKind::kDevice) return UnimplementedError("nccl: only device memory");
    if (region.base == nullptr || region.bytes == 0) {
      return InvalidArgumentError("nccl: an empty region");
    }
    cudaPointerAttributes attributes{};
    TANDEM_CUDA_RETURN(cudaPointerGetAttributes(&attributes, region.base));
    if ((attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged) ||
        attributes.device != region.device) {
      return InvalidArgumentError("nccl: the region is not memory of device " +
                                  std::to_string(region.device));
    }
    TANDEM_ASSIGN_OR_RETURN(const uint64_t id, engine_->AddRegion(region));
    return std::unique_ptr<Registration>(new NcclRegistration(engine_, id, region));
  }

  StatusOr<std::unique_ptr<Connection>> Connect(const RemoteDescriptor& peer) override {
    Described d;
    if (peer.backend != "nccl" || !Decode(peer.bytes, d)) {
      return InvalidArgumentError("nccl: not an nccl descriptor (backend \"" + peer.backend +
                                  "\", " + std::to_string(peer.bytes.size()) + " bytes)");
    }
    TANDEM_ASSIGN_OR_RETURN(const Engine::Connected c, engine_->Connect(d));
    return std::unique_ptr<Connection>(new NcclConnection(engine_, c.channel, c.remote_bytes));
  }

  StatusOr<std::unique_ptr<Transfer>> Post(
      const Registration& local, Connection& peer, std::span<const TransferOp> ops,
      Direction direction, std::chrono::steady_clock::time_point deadline) override {
    const auto* reg = dynamic_cast<const NcclRegistration*>(&local);
    const auto* conn = dynamic_cast<const NcclConnection*>(&peer);
    if (reg == nullptr || conn == nullptr || reg->engine() != engine_.get() ||
        conn->engine() != engine_.get()) {
      return InvalidArgumentError("nccl: a registration or connection of another backend");
    }
    if (ops.size() > kMaxOps) {
      return InvalidArgumentError("nccl: " + std::to_string(ops.size()) + " ops in one transfer; " +
                                  std::to_string(kMaxOps) + " at most");
    }
    if (Status s = CheckOps("nccl", ops, reg->region().bytes, conn->remote_bytes()); !s.ok()) {
      return s;
    }
    Group g;
    g.job = std::make_shared<Job>();
    g.region = reg->id();
    g.base = static_cast<std::byte*>(reg->region().base);
    g.sends = direction == Direction::kWrite;
    g.deadline = deadline;
    for (const TransferOp& op : ops) {
      if (op.bytes == 0) continue;
      TransferOp* last = g.ops.empty() ? nullptr : &g.ops.back();
      if (last != nullptr && last->local_offset + last->bytes == op.local_offset &&
          last->remote_offset + last->bytes == op.remote_offset) {
        last->bytes += op.bytes;  // neighbours on both sides travel as one op
      } else {
        g.ops.push_back(op);
      }
    }
    std::shared_ptr<Job> job = g.job;
    if (g.ops.empty()) {
      Finish(*job, OkStatus());
    } else {
      TANDEM_RETURN_IF_ERROR(engine_->Submit(conn->channel(), std::move(g)));
    }
    return std::unique_ptr<Transfer>(new NcclTransfer(std::move(job)));
  }

 private:
  const std::shared_ptr<Engine> engine_;
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> MakeNcclBackend(const BackendOptions& options) {
  TANDEM_ASSIGN_OR_RETURN(std::shared_ptr<Engine> engine, Engine::Create());
  return std::unique_ptr<Backend>(new NcclBackend(std::move(engine)));
}

}  // namespace tandem::transfer
