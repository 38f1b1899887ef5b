#include "cli/bench/fake_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <queue>
#include <unordered_map>

#include "cli/bench/socket_io.h"

namespace tandem::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kListenId = 0;
constexpr uint64_t kWakeId = 1;

struct Pending {
  Clock::time_point due;
  std::string bytes;
  bool last = false;  // The response ends here.
  bool cut = false;   // ... and the connection closes.
};

struct Conn {
  int fd = -1;
  std::string in;
  std::string out;
  size_t out_pos = 0;
  bool writable_watch = false;
  std::deque<Pending> pending;
  bool busy = false;  // A response is still being streamed.
  bool close_when_flushed = false;
};

struct Timer {
  Clock::time_point due;
  uint64_t conn;
  bool operator>(const Timer& o) const { return due > o.due; }
};

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

void AppendChunk(std::string_view bytes, std::string* out) {
  char size[20];
  const int n = std::snprintf(size, sizeof(size), "%zx\r\n", bytes.size());
  out->append(size, n);
  out->append(bytes);
  out->append("\r\n");
}

// Case-insensitive "Content-Length:" value in a raw header block; 0 when absent.
size_t ContentLength(std::string_view headers) {
  constexpr std::string_view kName = "content-length:";
  for (size_t pos = 0; pos < headers.size();) {
    size_t eol = headers.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = headers.size();
    std::string_view line = headers.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.size() < kName.size()) continue;
    bool match = true;
    for (size_t i = 0; i < kName.size() && match; ++i) {
      match = std::tolower(static_cast<unsigned char>(line[i])) == kName[i];
    }
    if (match) return std::strtoull(std::string(line.substr(kName.size())).c_str(), nullptr, 10);
  }
  return 0;
}

class ServerLoop {
 public:
  ServerLoop(int listen_fd, int epoll_fd, int wake_fd, const FakeScript& script,
             std::atomic<int64_t>* requests, std::atomic<int64_t>* connections)
      : listen_fd_(listen_fd),
        epoll_fd_(epoll_fd),
        wake_fd_(wake_fd),
        script_(script),
        requests_(requests),
        connections_(connections) {}

  ~ServerLoop() {
    for (auto& [id, c] : conns_) ::close(c->fd);
  }

  void Run() {
    epoll_event events[256];
    while (true) {
      int timeout = -1;
      if (!timers_.empty()) {
        const auto wait = timers_.top().due - Clock::now();
        timeout = static_cast<int>(
            std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(wait).count()));
      }
      const int n = ::epoll_wait(epoll_fd_, events, 256, timeout);
      for (int i = 0; i < n; ++i) {
        const uint64_t id = events[i].data.u64;
        if (id == kWakeId) return;
        if (id == kListenId) {
          Accept();
          continue;
        }
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        if (events[i].events & EPOLLOUT) Flush(id, it->second.get());
        if (conns_.count(id) && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) Read(id);
      }
      const Clock::time_point now = Clock::now();
      while (!timers_.empty() && timers_.top().due <= now) {
        const uint64_t id = timers_.top().conn;
        timers_.pop();
        if (conns_.count(id)) Release(id, now);
      }
    }
  }

 private:
  void Accept() {
    while (true) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      connections_->fetch_add(1);
      const uint64_t id = next_id_++;
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = id;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
      conns_.emplace(id, std::move(c));
    }
  }

  void Close(uint64_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    ::close(it->second->fd);
    conns_.erase(it);
  }

  void Read(uint64_t id) {
    Conn* c = conns_[id].get();
    char buf[65536];
    while (true) {
      const ssize_t n = ::recv(c->fd, buf, sizeof(buf), 0);
      if (n > 0) {
        c->in.append(buf, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof(buf)) break;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      Close(id);
      return;
    }
    Serve(id, c, Clock::now());
  }

  // Answers the next whole request in c->in, unless a response is still streaming.
  void Serve(uint64_t id, Conn* c, Clock::time_point now) {
    if (c->busy) return;
    const size_t head_end = c->in.find("\r\n\r\n");
    if (head_end == std::string::npos) return;
    const std::string_view head(c->in.data(), head_end);
    const size_t line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    const size_t length =
        ContentLength(head.substr(line_end == std::string_view::npos ? head.size() : line_end));
    if (c->in.size() < head_end + 4 + length) return;
    FakeRequest request;
    const size_t sp1 = line.find(' ');
    const size_t sp2 = line.find(' ', sp1 + 1);
    request.method = std::string(line.substr(0, sp1));
    request.path = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
    request.headers = std::string(head);
    request.body = c->in.substr(head_end + 4, length);
    c->in.erase(0, head_end + 4 + length);
    requests_->fetch_add(1);
    const FakeResponse r =
        script_ ? script_(request) : JsonResponse(404, R"({"error":{"message":"not found"}})");
    std::string& out = c->out;
    out += "HTTP/1.1 " + std::to_string(r.status) + " " + Reason(r.status) +
           "\r\nContent-Type: " + r.content_type + "\r\n";
    if (!r.chunked) {
      std::string body;
      for (const FakeEvent& e : r.events) body += e.bytes;
      out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
      Flush(id, c);
      if (conns_.count(id)) Serve(id, c, now);
      return;
    }
    out += "Transfer-Encoding: chunked\r\n\r\n";
    c->busy = true;
    Clock::time_point due = now;
    for (size_t i = 0; i < r.events.size(); ++i) {
      Pending p;
      due += r.events[i].delay;
      p.due = due;
      AppendChunk(r.events[i].bytes, &p.bytes);
      c->pending.push_back(std::move(p));
    }
    if (c->pending.empty()) c->pending.push_back(Pending{now, "", false, false});
    c->pending.back().last = true;
    c->pending.back().cut = r.cut;
    if (!r.cut) c->pending.back().bytes += "0\r\n\r\n";
    Release(id, now);
  }

  // Moves the due pieces of the streaming response to the output and flushes.
  void Release(uint64_t id, Clock::time_point now) {
    Conn* c = conns_[id].get();
    bool ended = false;
    while (!c->pending.empty() && c->pending.front().due <= now) {
      Pending& p = c->pending.front();
      c->out += p.bytes;
      if (p.last) {
        ended = true;
        c->busy = false;
        c->close_when_flushed = p.cut;
      }
      c->pending.pop_front();
    }
    if (!c->pending.empty()) timers_.push(Timer{c->pending.front().due, id});
    Flush(id, c);
    if (ended && conns_.count(id)) Serve(id, c, now);
  }

  void Flush(uint64_t id, Conn* c) {
    if (SendSome(c->fd, c->out, &c->out_pos) == SendResult::kError) {
      Close(id);
      return;
    }
    if (c->out_pos == c->out.size()) {
      c->out.clear();
      c->out_pos = 0;
      if (c->close_when_flushed) {
        Close(id);
        return;
      }
    }
    const bool want = !c->out.empty();
    if (want != c->writable_watch) {
      epoll_event ev{};
      ev.events = EPOLLIN | (want ? static_cast<uint32_t>(EPOLLOUT) : 0u);
      ev.data.u64 = id;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
      c->writable_watch = want;
    }
  }

  int listen_fd_, epoll_fd_, wake_fd_;
  const FakeScript& script_;
  std::atomic<int64_t>* requests_;
  std::atomic<int64_t>* connections_;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  uint64_t next_id_ = 2;
};

}  // namespace

StatusOr<std::unique_ptr<FakeServer>> FakeServer::Start(FakeServerOptions options) {
  std::unique_ptr<FakeServer> server(new FakeServer());
  server->options_ = std::move(options);
  server->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (server->listen_fd_ < 0 ||
      ::bind(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(server->listen_fd_, 4096) != 0 ||
      ::getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return UnavailableError(std::string("fake server: cannot listen: ") + std::strerror(errno));
  }
  server->port_ = ntohs(addr.sin_port);
  server->epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  server->wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (server->epoll_fd_ < 0 || server->wake_fd_ < 0) {
    return InternalError(std::string("fake server: ") + std::strerror(errno));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenId;
  ::epoll_ctl(server->epoll_fd_, EPOLL_CTL_ADD, server->listen_fd_, &ev);
  ev.data.u64 = kWakeId;
  ::epoll_ctl(server->epoll_fd_, EPOLL_CTL_ADD, server->wake_fd_, &ev);
  server->thread_ = std::thread([s = server.get()] { s->Loop(); });
  return server;
}

void FakeServer::Loop() {
  if (options_.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(options_.cpu, &set);
    ::sched_setaffinity(0, sizeof(set), &set);
  }
  ServerLoop loop(listen_fd_, epoll_fd_, wake_fd_, options_.script, &requests_, &connections_);
  loop.Run();
}

FakeServer::~FakeServer() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
    thread_.join();
  }
  for (int fd : {listen_fd_, epoll_fd_, wake_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

FakeResponse CompletionStream(int tokens, std::chrono::microseconds first,
                              std::chrono::microseconds gap, int prompt_tokens, int cached_tokens,
                              bool chat) {
  FakeResponse r;
  const std::string head =
      chat
          ? R"(data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":0,"model":"fake","choices":[{"index":0,"delta":{"content":"t"},"finish_reason":null}],"usage":null})"
          : R"(data: {"id":"cmpl-1","object":"text_completion","created":0,"model":"fake","choices":[{"index":0,"text":"t","logprobs":null,"finish_reason":null}],"usage":null})";
  for (int i = 0; i < tokens; ++i) r.events.push_back({i == 0 ? first : gap, head + "\n\n"});
  std::string usage =
      "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":0,"
      "\"model\":\"fake\",\"choices\":[],\"usage\":{\"prompt_tokens\":" +
      std::to_string(prompt_tokens) + ",\"completion_tokens\":" + std::to_string(tokens) +
      ",\"total_tokens\":" + std::to_string(prompt_tokens + tokens);
  if (cached_tokens >= 0) {
    usage += ",\"prompt_tokens_details\":{\"cached_tokens\":" + std::to_string(cached_tokens) + "}";
  }
  usage += "}}\n\ndata: [DONE]\n\n";
  r.events.push_back({std::chrono::microseconds(0), std::move(usage)});
  return r;
}

FakeResponse JsonResponse(int status, std::string body) {
  FakeResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.chunked = false;
  r.events.push_back({std::chrono::microseconds(0), std::move(body)});
  return r;
}

int ClosedLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string ModelsJson(const std::string& model, int vocab_size) {
  return R"({"object":"list","data":[{"id":")" + model +
         R"(","object":"model","owned_by":"fake-server","vocab_size":)" +
         std::to_string(vocab_size) + "}]}";
}

}  // namespace tandem::bench
