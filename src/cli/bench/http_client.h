// A single-threaded HTTP/1.1 client for load generation: one epoll loop, non-blocking sockets,
// one request per connection at a time (no pipelining), keep-alive connections reused LIFO, a
// connect deadline and a per-request deadline. Responses are parsed incrementally and their
// bodies handed to the request's handler as they arrive, with the time they arrived.
//
// Thread safety: none. One thread calls every method and receives every callback (from Poll,
// CancelAll); handlers may call Send from a callback.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cli/bench/http_response_parser.h"
#include "tandem/status.h"

namespace tandem::bench {

using Clock = std::chrono::steady_clock;

// Why a request ended without a whole response.
enum class FailureKind {
  kConnect,     // Could not connect (refused, unreachable, timed out, out of descriptors).
  kTimeout,     // No whole response within the request timeout.
  kIncomplete,  // The connection closed or reset before the response ended.
  kProtocol,    // The response was not valid HTTP/1.1.
  kCancelled,   // CancelAll.
};

// Receives one request's response. Exactly one of OnEnd / OnFailure ends it (unless OnBody
// returned false); nothing is called after that.
class ResponseHandler {
 public:
  virtual ~ResponseHandler() = default;
  // The status line and headers arrived.
  virtual void OnHead(const HttpResponseParser& response, Clock::time_point now) = 0;
  // A piece of the body, framing removed. Returning false abandons the response: the
  // connection is closed and the handler hears nothing more.
  virtual bool OnBody(std::string_view bytes, Clock::time_point now) = 0;
  virtual void OnEnd(Clock::time_point now) = 0;
  virtual void OnFailure(FailureKind kind, std::string_view message, Clock::time_point now) = 0;
};

struct HttpClientOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  // A connection not established within this fails its request (kConnect).
  double connect_timeout_s = 10;
  // A request without its whole response this long after Send fails (kTimeout).
  double request_timeout_s = 600;
  // An idle keep-alive connection older than this is closed instead of reused: a server closes
  // idle connections after its own timeout (tandem 30 s, uvicorn 5 s), and a request written
  // just as it does fails with nothing read.
  double max_idle_s = 2;
};

class HttpClient {
 public:
  // Resolves the host (once) and creates the epoll instance. Also raises this process's open
  // file limit to its hard limit, since every request in flight holds a connection.
  static StatusOr<std::unique_ptr<HttpClient>> Create(const HttpClientOptions& options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `request` (complete HTTP bytes) on an idle connection or a new one. `handler` must
  // outlive the request. Failures found here are reported from the next Poll.
  void Send(std::string request, ResponseHandler* handler);

  // Waits up to `timeout` for network events and dispatches them, then fails requests past
  // their deadlines. Returns early when a signal interrupts the wait.
  void Poll(Clock::duration timeout);

  // Fails every request in flight with kCancelled and `message`.
  void CancelAll(std::string_view message);

  // Requests sent and not yet ended.
  size_t in_flight() const { return in_flight_; }
  // Open connections (busy and idle).
  size_t connections() const { return connections_.size(); }

 private:
  struct Connection;
  struct Deferred {
    ResponseHandler* handler;
    FailureKind kind;
    std::string message;
  };

  explicit HttpClient(const HttpClientOptions& options);

  Connection* Connect(Clock::time_point now, std::string* error);
  void Write(Connection* c, Clock::time_point now);
  void Read(Connection* c, Clock::time_point now);
  // Feeds response bytes; false when the connection stopped reading (response over or closed).
  bool Consume(Connection* c, std::string_view input, Clock::time_point now);
  void Complete(Connection* c, Clock::time_point now);
  void Fail(Connection* c, FailureKind kind, std::string_view message, Clock::time_point now);
  void Close(Connection* c);
  void Watch(Connection* c, uint32_t events);
  void CheckDeadlines(Clock::time_point now);
  void CloseStaleIdle(Clock::time_point now);
  void DeliverDeferred(Clock::time_point now);

  HttpClientOptions options_;
  int epoll_fd_ = -1;
  std::vector<unsigned char> address_;  // sockaddr of the server.
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<Connection*> idle_;                    // Reused last-in first-out.
  std::vector<std::unique_ptr<Connection>> closed_;  // Freed at the end of Poll.
  std::vector<Deferred> deferred_;
  std::vector<char> read_buffer_;
  size_t in_flight_ = 0;
  Clock::time_point next_deadline_check_;
};

}  // namespace tandem::bench
