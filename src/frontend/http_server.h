// HttpServer: an asynchronous HTTP/1.1 server on Boost.Beast/Asio. Each connection is an
// HttpSession on its own strand: it reads a request (Expect: 100-continue honoured, bodies over
// the limit refused with 413 before they are read), hands it to the HttpHandler, and writes the
// handler's reply — a whole body, or a server-sent-event stream in chunked encoding — then waits
// for the next request on the same connection (keep-alive). While a request is being answered
// the session keeps a read open on the socket, so a client that hangs up mid-response is noticed
// at once and the handler's disconnect callback runs (it cancels the generation).
//
// Limits that keep a flood of clients from starving the server: at most `max_connections` are
// open (beyond it a connection gets a 503 and is closed at once); a connection must send its
// request header within `header_timeout_s` of its first byte (and of connecting), its body within
// `body_timeout_s`, and one idle between requests for `keep_alive_timeout_s` is closed. Out of
// file descriptors, a spare one is given up to take the waiting connection and answer it 503
// too; when accept fails otherwise the server waits before accepting again, from 10 ms doubling
// to 1 s. Either is logged at most every 10 s, with the count of failures.
//
// Thread safety: HttpServer's methods run on any thread. An HttpSession's methods must run on
// its strand: the handler is called there, and Post() gets back there from other threads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <utility>  // Before Asio: Boost 1.74's awaitable.hpp needs std::exchange.

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "tandem/status.h"

namespace tandem::frontend {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using HttpRequest = http::request<http::string_body>;

class HttpSession;

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // A complete request. The handler must eventually Reply or end an event stream (unless the
  // session closes first).
  virtual void Handle(HttpRequest&& request, std::shared_ptr<HttpSession> session) = 0;
  // A request that could not be read: 400 (malformed) or 413 (too large). The connection closes
  // after the reply.
  virtual void HandleUnreadable(int status, std::string message,
                                std::shared_ptr<HttpSession> session) = 0;
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;  // 0: ephemeral.
  uint64_t max_body_size = 1 << 20;
  int max_connections = 1024;     // Open connections at most; more are refused with 503.
  int keep_alive_timeout_s = 30;  // A connection idle this long between requests is closed.
  int header_timeout_s = 10;      // Time to receive a request's header, from its first byte.
  int body_timeout_s = 60;        // Time to receive a request's body, from its header.
  // Runs when the number of open connections changes, and when one is refused.
  std::function<void(int)> on_connections;
  std::function<void()> on_refused;
};

// Counts shared by every session.
struct HttpServerState {
  std::atomic<int> busy{0};  // Requests read and not yet fully answered.
  std::atomic<int> connections{0};    // Sessions alive.
  std::atomic<bool> draining{false};  // Close connections after their current response.
};

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(asio::ip::tcp::socket socket, HttpHandler& handler, HttpServerState& state,
              const HttpServerOptions& options);
  ~HttpSession();
  void Start();

  // A whole response; ends the request. To a HEAD request only the header goes out.
  void Reply(int status, std::string_view content_type, std::string body,
             std::string_view extra_headers = {});
  // A 200 text/event-stream response: the header now, events with SendEvent, then End.
  void BeginEventStream();
  void SendEvent(std::string data);
  void EndEventStream();

  // Runs once if the connection closes before the response is complete.
  void SetDisconnectHandler(std::function<void()> handler) {
    on_disconnect_ = std::move(handler);
  }
  // Runs `fn` on this session's strand, keeping the session alive until then.
  void Post(std::function<void()> fn);
  bool closed() const { return closed_; }

 private:
  // Waits for the next request's first byte (the keep-alive idle time), then reads its header.
  void ReadHeader();
  void OnFirstBytes(beast::error_code ec, size_t n);
  void ReadHeaderBytes();
  void OnHeader(beast::error_code ec);
  void ReadBody();
  void OnBody(beast::error_code ec);
  void Watch();
  void OnWatch(beast::error_code ec, size_t n);
  void Write(std::string data);
  void WriteNext();
  void OnWrite(beast::error_code ec);
  void FinishResponse();
  // A request refused before its body was read (413, malformed): answered, then the connection
  // closes.
  void Refuse(int status, std::string message);
  // Drains what the client still sends after the last response, then closes.
  void Linger();
  void Close();
  std::string StatusLine(int status) const;

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  HttpHandler& handler_;
  HttpServerState& state_;
  const HttpServerOptions& options_;
  std::deque<std::string> out_;
  bool writing_ = false;
  bool in_request_ = false;     // A request was handed over and is not fully answered.
  bool response_done_ = false;  // The handler has produced the whole response.
  bool watching_ = false;
  bool keep_alive_ = true;
  bool chunked_ = false;
  bool closed_ = false;
  bool lingering_ = false;      // Answered the last request; draining the client before closing.
  bool head_ = false;           // The request being answered is a HEAD.
  int requests_ = 0;            // Requests read on this connection.
  size_t lingered_bytes_ = 0;
  unsigned version_ = 11;
  std::function<void()> on_disconnect_;
};

class HttpServer {
 public:
  // Binds and starts accepting on `io`. Errors: the address does not resolve or bind.
  static StatusOr<std::unique_ptr<HttpServer>> Create(asio::io_context& io,
                                                      const HttpServerOptions& options,
                                                      HttpHandler& handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  uint16_t port() const { return port_; }
  // Stops accepting and lets open connections close after their current response.
  void StartDraining();
  // Requests in progress.
  int busy() const { return state_.busy.load(); }

 private:
  HttpServer(asio::io_context& io, const HttpServerOptions& options, HttpHandler& handler)
      : io_(io),
        options_(options),
        handler_(handler),
        acceptor_(asio::make_strand(io)),
        retry_timer_(acceptor_.get_executor()) {}
  void Accept();
  void OnAccept(beast::error_code ec, asio::ip::tcp::socket socket);
  // Answers 503 on a connection beyond max_connections and closes it, without a session.
  void Refuse(asio::ip::tcp::socket socket);
  // Out of descriptors: closes the spare one, accepts a waiting connection and refuses it, then
  // takes the spare back. False when no connection could be taken that way.
  bool RefuseWithSpareDescriptor();

  asio::io_context& io_;
  const HttpServerOptions options_;
  HttpHandler& handler_;
  asio::ip::tcp::acceptor acceptor_;
  // Acceptor strand only.
  asio::steady_timer retry_timer_;
  std::chrono::milliseconds retry_delay_{0};  // Backoff after accept errors; 0 after a success.
  std::chrono::steady_clock::time_point last_error_log_;
  int errors_since_log_ = 0;
  int spare_fd_ = -1;  // /dev/null, held for RefuseWithSpareDescriptor.
  HttpServerState state_;
  uint16_t port_ = 0;
};

}  // namespace tandem::frontend
