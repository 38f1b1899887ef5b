#include "cli/bench/http_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cli/bench/socket_io.h"

namespace tandem::bench {

namespace {

constexpr size_t kReadBuffer = 256 * 1024;
constexpr int kMaxEvents = 256;
// Deadlines are checked this often: timeouts are seconds, so this is precise enough and keeps
// the scan of connections off the per-event path.
constexpr auto kDeadlineCheck = std::chrono::milliseconds(20);

std::string Errno(std::string_view what, int error) {
  return std::string(what) + ": " + std::strerror(error);
}

}  // namespace

struct HttpClient::Connection {
  enum class State { kConnecting, kWriting, kReading, kIdle, kClosed };
  int fd = -1;
  State state = State::kConnecting;
  uint32_t events = 0;  // What epoll watches.
  std::string out;      // The request; out_pos bytes of it are written.
  size_t out_pos = 0;
  HttpResponseParser parser;
  ResponseHandler* handler = nullptr;
  Clock::time_point connect_deadline;
  Clock::time_point deadline;
  Clock::time_point idle_since;
  size_t slot = 0;  // Index in connections_.
};

HttpClient::HttpClient(const HttpClientOptions& options)
    : options_(options), read_buffer_(kReadBuffer) {}

HttpClient::~HttpClient() {
  for (auto& c : connections_) ::close(c->fd);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

StatusOr<std::unique_ptr<HttpClient>> HttpClient::Create(const HttpClientOptions& options) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const std::string port = std::to_string(options.port);
  const int rc = ::getaddrinfo(options.host.c_str(), port.c_str(), &hints, &result);
  if (rc != 0 || result == nullptr) {
    return UnavailableError("cannot resolve host '" + options.host + "': " + ::gai_strerror(rc));
  }
  std::unique_ptr<HttpClient> client(new HttpClient(options));
  const auto* bytes = reinterpret_cast<const unsigned char*>(result->ai_addr);
  client->address_.assign(bytes, bytes + result->ai_addrlen);
  ::freeaddrinfo(result);
  client->epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (client->epoll_fd_ < 0) return InternalError(Errno("epoll_create1", errno));
  // Every request in flight holds a descriptor; the default soft limit (1024) is too low.
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  return client;
}

void HttpClient::Watch(Connection* c, uint32_t events) {
  if (c->events == events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = c;
  ::epoll_ctl(epoll_fd_, c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &ev);
  c->events = events;
}

HttpClient::Connection* HttpClient::Connect(Clock::time_point now, std::string* error) {
  const auto* addr = reinterpret_cast<const sockaddr*>(address_.data());
  const int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = Errno("socket", errno);
    return nullptr;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd, addr, static_cast<socklen_t>(address_.size())) != 0 && errno != EINPROGRESS) {
    *error = Errno("connect to " + options_.host + ":" + std::to_string(options_.port), errno);
    ::close(fd);
    return nullptr;
  }
  auto owned = std::make_unique<Connection>();
  Connection* c = owned.get();
  c->fd = fd;
  c->slot = connections_.size();
  c->connect_deadline = now + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(options_.connect_timeout_s));
  connections_.push_back(std::move(owned));
  // Connecting: wait until writable (EPOLLOUT also reports a refused connection).
  Watch(c, EPOLLOUT);
  return c;
}

void HttpClient::Send(std::string request, ResponseHandler* handler) {
  const Clock::time_point now = Clock::now();
  ++in_flight_;
  Connection* c = nullptr;
  CloseStaleIdle(now);
  if (!idle_.empty()) {
    c = idle_.back();
    idle_.pop_back();
    c->state = Connection::State::kWriting;
  } else {
    std::string error;
    c = Connect(now, &error);
    if (c == nullptr) {
      // Reported from Poll, so a handler never hears of its end while still sending.
      deferred_.push_back({handler, FailureKind::kConnect, std::move(error)});
      return;
    }
  }
  c->parser.Reset();
  c->handler = handler;
  c->out = std::move(request);
  c->out_pos = 0;
  c->deadline = now + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(options_.request_timeout_s));
  if (c->state != Connection::State::kConnecting) Write(c, now);
}

void HttpClient::Write(Connection* c, Clock::time_point now) {
  switch (SendSome(c->fd, c->out, &c->out_pos)) {
    case SendResult::kDone:
      break;
    case SendResult::kBlocked:
      Watch(c, EPOLLIN | EPOLLOUT);
      return;
    case SendResult::kError:
      Fail(c, FailureKind::kIncomplete, Errno("send", errno), now);
      return;
  }
  c->out.clear();
  c->state = Connection::State::kReading;
  Watch(c, EPOLLIN);
}

void HttpClient::Read(Connection* c, Clock::time_point now) {
  while (true) {
    const ssize_t n = ::recv(c->fd, read_buffer_.data(), read_buffer_.size(), 0);
    if (n > 0) {
      if (c->state == Connection::State::kIdle) {  // Bytes nobody asked for: drop the connection.
        Close(c);
        return;
      }
      if (!Consume(c, std::string_view(read_buffer_.data(), static_cast<size_t>(n)), now)) return;
      if (static_cast<size_t>(n) < read_buffer_.size()) return;  // Drained; epoll says when more.
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (c->state == Connection::State::kIdle) {  // The server closed a kept-alive connection.
      Close(c);
      return;
    }
    const int error = n < 0 ? errno : 0;
    if (c->parser.OnEof() == HttpResponseParser::Event::kDone) {
      Complete(c, now);
    } else {
      Fail(c, FailureKind::kIncomplete,
           error != 0 ? Errno(c->parser.started() ? "connection lost mid-response"
                                                  : "connection lost before a response",
                              error)
                      : c->parser.error(),
           now);
    }
    return;
  }
}

bool HttpClient::Consume(Connection* c, std::string_view input, Clock::time_point now) {
  std::string_view body;
  while (true) {
    switch (c->parser.Next(&input, &body)) {
      case HttpResponseParser::Event::kNeedMore:
        return true;
      case HttpResponseParser::Event::kHead:
        c->handler->OnHead(c->parser, now);
        break;
      case HttpResponseParser::Event::kBody:
        if (!c->handler->OnBody(body, now)) {
          c->handler = nullptr;
          --in_flight_;
          Close(c);
          return false;
        }
        break;
      case HttpResponseParser::Event::kDone:
        Complete(c, now);
        return false;
      case HttpResponseParser::Event::kError:
        Fail(c, FailureKind::kProtocol, "malformed HTTP response: " + c->parser.error(), now);
        return false;
    }
  }
}

void HttpClient::Complete(Connection* c, Clock::time_point now) {
  ResponseHandler* handler = c->handler;
  c->handler = nullptr;
  --in_flight_;
  if (c->parser.keep_alive() && c->state == Connection::State::kReading) {
    // Back to the pool before the handler runs, so a request it sends can reuse it. Idle
    // connections stay watched for reading: a close by the server is seen and the connection
    // dropped before it is reused.
    c->state = Connection::State::kIdle;
    c->idle_since = now;
    idle_.push_back(c);
  } else {
    Close(c);
  }
  handler->OnEnd(now);
}

void HttpClient::Fail(Connection* c, FailureKind kind, std::string_view message,
                      Clock::time_point now) {
  ResponseHandler* handler = c->handler;
  c->handler = nullptr;
  --in_flight_;
  Close(c);
  handler->OnFailure(kind, message, now);
}

void HttpClient::Close(Connection* c) {
  if (c->state == Connection::State::kClosed) return;
  if (c->state == Connection::State::kIdle) {
    idle_.erase(std::find(idle_.begin(), idle_.end(), c));
  }
  ::close(c->fd);  // Also removes it from the epoll set.
  c->state = Connection::State::kClosed;
  // Freed at the end of Poll: an event for it may still be in this round's list.
  const size_t slot = c->slot;
  std::swap(connections_[slot], connections_.back());
  connections_[slot]->slot = slot;
  closed_.push_back(std::move(connections_.back()));
  connections_.pop_back();
}

void HttpClient::CloseStaleIdle(Clock::time_point now) {
  // idle_ is ordered by idle_since: the oldest first.
  const auto max_idle = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options_.max_idle_s));
  while (!idle_.empty() && now - idle_.front()->idle_since > max_idle) Close(idle_.front());
}

void HttpClient::CheckDeadlines(Clock::time_point now) {
  CloseStaleIdle(now);
  std::vector<Connection*> late;
  for (auto& c : connections_) {
    if (c->handler == nullptr) continue;
    if (c->state == Connection::State::kConnecting ? now >= c->connect_deadline
                                                   : now >= c->deadline) {
      late.push_back(c.get());
    }
  }
  for (Connection* c : late) {
    if (c->state == Connection::State::kConnecting) {
      Fail(c, FailureKind::kConnect,
           "connect to " + options_.host + ":" + std::to_string(options_.port) +
               " timed out after " + std::to_string(options_.connect_timeout_s) + " s",
           now);
    } else {
      Fail(c, FailureKind::kTimeout,
           "no complete response within " + std::to_string(options_.request_timeout_s) + " s", now);
    }
  }
}

void HttpClient::DeliverDeferred(Clock::time_point now) {
  std::vector<Deferred> deferred;
  deferred.swap(deferred_);
  for (Deferred& d : deferred) {
    --in_flight_;
    d.handler->OnFailure(d.kind, d.message, now);
  }
}

void HttpClient::Poll(Clock::duration timeout) {
  Clock::time_point now = Clock::now();
  if (!deferred_.empty()) {
    DeliverDeferred(now);
    timeout = Clock::duration::zero();  // Handlers may have sent more; look again at once.
  }
  timeout = std::min(timeout, std::max(Clock::duration::zero(), next_deadline_check_ - now));
  const int timeout_ms =
      static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(timeout).count());
  epoll_event events[kMaxEvents];
  const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, timeout_ms);
  for (int i = 0; i < n; ++i) {
    auto* c = static_cast<Connection*>(events[i].data.ptr);
    if (c->state == Connection::State::kClosed) continue;
    now = Clock::now();
    const uint32_t ev = events[i].events;
    if (c->state == Connection::State::kConnecting) {
      int error = 0;
      socklen_t len = sizeof(error);
      ::getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len);
      if (error != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
        Fail(c, FailureKind::kConnect,
             Errno("connect to " + options_.host + ":" + std::to_string(options_.port),
                   error != 0 ? error : ECONNREFUSED),
             now);
        continue;
      }
      c->state = Connection::State::kWriting;
      Write(c, now);
      continue;
    }
    if ((ev & EPOLLOUT) && c->state == Connection::State::kWriting) Write(c, now);
    if (c->state != Connection::State::kClosed && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
      Read(c, now);
    }
  }
  now = Clock::now();
  if (now >= next_deadline_check_) {
    CheckDeadlines(now);
    next_deadline_check_ = now + kDeadlineCheck;
  }
  closed_.clear();
}

void HttpClient::CancelAll(std::string_view message) {
  const Clock::time_point now = Clock::now();
  DeliverDeferred(now);
  std::vector<Connection*> busy;
  for (auto& c : connections_) {
    if (c->handler != nullptr) busy.push_back(c.get());
  }
  for (Connection* c : busy) Fail(c, FailureKind::kCancelled, message, now);
  closed_.clear();
}

}  // namespace tandem::bench
