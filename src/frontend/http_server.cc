#include "frontend/http_server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <utility>

#include "common/logging.h"

namespace tandem::frontend {

namespace {

std::string Hex(size_t n) {
  char buf[32];
  const int len = std::snprintf(buf, sizeof(buf), "%zx", n);
  return std::string(buf, len);
}

}  // namespace

HttpSession::HttpSession(asio::ip::tcp::socket socket, HttpHandler& handler, HttpServerState& state,
                         const HttpServerOptions& options)
    : stream_(std::move(socket)), handler_(handler), state_(state), options_(options) {
  const int open = ++state_.connections;
  if (options_.on_connections) options_.on_connections(open);
}

HttpSession::~HttpSession() {
  const int open = --state_.connections;
  if (options_.on_connections) options_.on_connections(open);
}

void HttpSession::Start() {
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadHeader(); });
}

void HttpSession::Post(std::function<void()> fn) {
  asio::post(stream_.get_executor(),
             [self = shared_from_this(), fn = std::move(fn)] { fn(); });
}

void HttpSession::ReadHeader() {
  if (closed_) return;
  parser_.emplace();
  parser_->body_limit(options_.max_body_size);
  if (buffer_.size() > 0) {  // Pipelined bytes of the next request are here already.
    ReadHeaderBytes();
    return;
  }
  // A new connection has the header timeout to start; a kept-alive one may idle longer.
  stream_.expires_after(std::chrono::seconds(requests_ == 0 ? options_.header_timeout_s
                                                            : options_.keep_alive_timeout_s));
  stream_.async_read_some(
      buffer_.prepare(4096),
      [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnFirstBytes(ec, n); });
}

void HttpSession::OnFirstBytes(beast::error_code ec, size_t n) {
  if (ec) {  // Idle too long, or the client closed: nothing was asked, nothing to answer.
    Close();
    return;
  }
  buffer_.commit(n);
  ReadHeaderBytes();
}

void HttpSession::ReadHeaderBytes() {
  stream_.expires_after(std::chrono::seconds(options_.header_timeout_s));
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) {
                            self->OnHeader(ec);
                          });
}

void HttpSession::OnHeader(beast::error_code ec) {
  if (ec == http::error::body_limit) {  // Content-Length announced beyond the limit.
    Refuse(413, "the request body exceeds the limit of " +
                    std::to_string(options_.max_body_size) + " bytes");
    return;
  }
  if (ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
      Close();
      return;
    }
    Refuse(400, "malformed HTTP request: " + ec.message());
    return;
  }
  const auto& req = parser_->get();
  version_ = req.version();
  // Refuse an announced oversized body before the client sends it.
  if (parser_->content_length() && *parser_->content_length() > options_.max_body_size) {
    Refuse(413, "the request body exceeds the limit of " +
                    std::to_string(options_.max_body_size) + " bytes");
    return;
  }
  if (beast::iequals(req[http::field::expect], "100-continue")) {
    // The client waits for this before sending the body (curl does for bodies over 1 KiB).
    auto msg = std::make_shared<std::string>(StatusLine(100) + "\r\n");
    asio::async_write(stream_, asio::buffer(*msg),
                      [self = shared_from_this(), msg](beast::error_code ec, size_t) {
                        if (ec) return self->Close();
                        self->ReadBody();
                      });
    return;
  }
  ReadBody();
}

void HttpSession::Refuse(int status, std::string message) {
  in_request_ = true;
  state_.busy++;
  keep_alive_ = false;
  handler_.HandleUnreadable(status, std::move(message), shared_from_this());
}

void HttpSession::ReadBody() {
  stream_.expires_after(std::chrono::seconds(options_.body_timeout_s));
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) {
                     self->OnBody(ec);
                   });
}

void HttpSession::OnBody(beast::error_code ec) {
  if (ec == http::error::body_limit) {
    Refuse(413, "the request body exceeds the limit of " +
                    std::to_string(options_.max_body_size) + " bytes");
    return;
  }
  if (ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::eof) {
      Close();
      return;
    }
    Refuse(400, "malformed HTTP request: " + ec.message());
    return;
  }
  HttpRequest req = parser_->release();
  ++requests_;
  head_ = req.method() == http::verb::head;
  keep_alive_ = req.keep_alive() && !state_.draining.load();
  in_request_ = true;
  response_done_ = false;
  chunked_ = false;
  state_.busy++;
  stream_.expires_never();
  Watch();
  handler_.Handle(std::move(req), shared_from_this());
}

void HttpSession::Watch() {
  // Bounded: a client pipelining more than a body's worth is not read further until answered.
  if (watching_ || closed_ || buffer_.size() > options_.max_body_size) return;
  watching_ = true;
  stream_.async_read_some(buffer_.prepare(4096),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            self->OnWatch(ec, n);
                          });
}

void HttpSession::OnWatch(beast::error_code ec, size_t n) {
  watching_ = false;
  if (closed_) return;
  if (lingering_) {
    Linger();
    return;
  }
  if (!ec) {
    buffer_.commit(n);  // Pipelined bytes of the next request.
    if (in_request_) {
      Watch();
    } else {
      ReadHeader();
    }
    return;
  }
  if (ec == asio::error::operation_aborted && !in_request_) {
    ReadHeader();  // FinishResponse cancelled us to read the next request.
    return;
  }
  Close();  // The client hung up (mid-response, or right after it).
}

void HttpSession::Reply(int status, std::string_view content_type, std::string body,
                        std::string_view extra_headers) {
  if (closed_ || response_done_ || !in_request_) return;
  std::string msg = StatusLine(status);
  msg += "Server: tandem\r\nContent-Type: ";
  msg += content_type;
  msg += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  msg += extra_headers;
  msg += keep_alive_ && !state_.draining.load() ? "Connection: keep-alive\r\n\r\n"
                                                : "Connection: close\r\n\r\n";
  if (state_.draining.load()) keep_alive_ = false;
  if (!head_) msg += body;
  response_done_ = true;
  Write(std::move(msg));
}

void HttpSession::BeginEventStream() {
  if (closed_ || response_done_ || !in_request_) return;
  if (state_.draining.load()) keep_alive_ = false;
  chunked_ = version_ >= 11;
  if (!chunked_) keep_alive_ = false;  // HTTP/1.0: the stream ends with the connection.
  std::string msg = StatusLine(200);
  msg += "Server: tandem\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n";
  if (chunked_) msg += "Transfer-Encoding: chunked\r\n";
  msg += keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  Write(std::move(msg));
}

void HttpSession::SendEvent(std::string data) {
  if (closed_ || response_done_ || !in_request_ || data.empty()) return;
  if (chunked_) data = Hex(data.size()) + "\r\n" + data + "\r\n";
  Write(std::move(data));
}

void HttpSession::EndEventStream() {
  if (closed_ || response_done_ || !in_request_) return;
  response_done_ = true;
  Write(chunked_ ? "0\r\n\r\n" : "");
}

void HttpSession::Write(std::string data) {
  out_.push_back(std::move(data));
  if (!writing_) WriteNext();
}

void HttpSession::WriteNext() {
  if (out_.empty()) {
    if (response_done_ && in_request_) FinishResponse();
    return;
  }
  writing_ = true;
  asio::async_write(stream_, asio::buffer(out_.front()),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->OnWrite(ec);
                    });
}

void HttpSession::OnWrite(beast::error_code ec) {
  writing_ = false;
  if (closed_) {
    out_.clear();  // Kept alive for this write; nothing more goes out.
    return;
  }
  if (ec) {
    Close();
    return;
  }
  out_.pop_front();
  WriteNext();
}

void HttpSession::FinishResponse() {
  in_request_ = false;
  on_disconnect_ = nullptr;
  state_.busy--;
  if (!keep_alive_) {
    beast::error_code ignored;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    lingering_ = true;
    if (watching_) {
      stream_.socket().cancel();  // OnWatch goes on lingering.
    } else {
      Linger();
    }
    return;
  }
  if (watching_) {
    stream_.socket().cancel();  // No write is pending: this only ends the watch read.
  } else {
    ReadHeader();
  }
}

void HttpSession::Linger() {
  // Closing a socket with unread request bytes makes the kernel reset the connection, and a
  // client still sending its body (the one refused with 413, say) then loses the response already
  // sent. Read and drop what it sends until it closes, within a bounded time and size.
  constexpr size_t kMaxLingerBytes = 64 << 20;
  stream_.expires_after(std::chrono::seconds(5));
  auto scratch = std::make_shared<std::array<char, 16384>>();
  stream_.async_read_some(asio::buffer(*scratch),
                          [self = shared_from_this(), scratch](beast::error_code ec, size_t n) {
                            self->lingered_bytes_ += n;
                            if (ec || self->lingered_bytes_ > kMaxLingerBytes) {
                              self->Close();
                            } else {
                              self->Linger();
                            }
                          });
}

void HttpSession::Close() {
  if (closed_) return;
  closed_ = true;
  if (!writing_) out_.clear();  // A write in flight still reads out_.front().
  if (in_request_) {
    in_request_ = false;
    state_.busy--;
    // A client that hangs up after the whole response was queued lost nothing.
    auto fn = std::move(on_disconnect_);
    if (fn && !response_done_) fn();
  }
  on_disconnect_ = nullptr;
  beast::error_code ignored;
  stream_.socket().close(ignored);
}

std::string HttpSession::StatusLine(int status) const {
  std::string line = version_ >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
  line += std::to_string(status);
  line += ' ';
  line += std::string(http::obsolete_reason(static_cast<http::status>(status)));
  line += "\r\n";
  return line;
}

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(asio::io_context& io,
                                                         const HttpServerOptions& options,
                                                         HttpHandler& handler) {
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(options.host, ec);
  if (ec) return InvalidArgumentError("--host: '" + options.host + "' is not an IP address");
  std::unique_ptr<HttpServer> server(new HttpServer(io, options, handler));
  const asio::ip::tcp::endpoint endpoint(address, options.port);
  auto& a = server->acceptor_;
  a.open(endpoint.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return UnavailableError("cannot listen on " + options.host + ":" +
                            std::to_string(options.port) + ": " + ec.message());
  }
  server->port_ = a.local_endpoint(ec).port();
  server->spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  server->Accept();
  return server;
}

void HttpServer::Accept() {
  acceptor_.async_accept(asio::make_strand(io_),
                         [this](beast::error_code ec, asio::ip::tcp::socket socket) {
                           OnAccept(ec, std::move(socket));
                         });
}

void HttpServer::OnAccept(beast::error_code ec, asio::ip::tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
  if (ec) {
    constexpr auto kMaxDelay = std::chrono::milliseconds(1000);
    constexpr auto kLogEvery = std::chrono::seconds(10);
    ++errors_since_log_;
    const auto now = std::chrono::steady_clock::now();
    // Out of descriptors: the spare one makes room to take the waiting connection and answer it
    // 503, as beyond max_connections, rather than leave it (and the health checks queued behind
    // it) waiting in the backlog.
    const bool no_descriptors = ec.value() == EMFILE || ec.value() == ENFILE;
    if (no_descriptors && RefuseWithSpareDescriptor()) {
      retry_delay_ = std::chrono::milliseconds(0);
      if (now - last_error_log_ >= kLogEvery) {
        spdlog::warn(
            "http connections refused at the open-file limit error={} failures={} "
            "open_connections={}",
            Quoted(ec.message()), errors_since_log_, state_.connections.load());
        last_error_log_ = now;
        errors_since_log_ = 0;
      }
      Accept();
      return;
    }
    // Accepting again at once would fail again at once. Wait, so the connections already open
    // are served and close, and say so without flooding the log.
    retry_delay_ = retry_delay_.count() == 0 ? std::chrono::milliseconds(10)
                                             : std::min(retry_delay_ * 2, kMaxDelay);
    if (now - last_error_log_ >= kLogEvery) {
      spdlog::warn("http accept failed error={} failures={} retry_ms={} open_connections={}",
                   Quoted(ec.message()), errors_since_log_, retry_delay_.count(),
                   state_.connections.load());
      last_error_log_ = now;
      errors_since_log_ = 0;
    }
    retry_timer_.expires_after(retry_delay_);
    retry_timer_.async_wait([this](beast::error_code wait_ec) {
      if (!wait_ec) Accept();
    });
    return;
  }
  retry_delay_ = std::chrono::milliseconds(0);
  if (state_.connections.load() >= options_.max_connections) {
    Refuse(std::move(socket));
  } else {
    beast::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    std::make_shared<HttpSession>(std::move(socket), handler_, state_, options_)->Start();
  }
  Accept();
}

bool HttpServer::RefuseWithSpareDescriptor() {
  if (spare_fd_ < 0) return false;
  ::close(spare_fd_);
  spare_fd_ = -1;
  beast::error_code ec;
  asio::ip::tcp::socket socket(io_);
  acceptor_.non_blocking(true, ec);
  if (!ec) acceptor_.accept(socket, ec);
  if (!ec) Refuse(std::move(socket));
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return !ec;
}

HttpServer::~HttpServer() {
  if (spare_fd_ >= 0) ::close(spare_fd_);
}

void HttpServer::Refuse(asio::ip::tcp::socket socket) {
  static const std::string kResponse = [] {
    const std::string body =
        R"({"error":{"message":"too many connections; retry later","type":)"
        R"("service_unavailable_error","param":null,"code":"too_many_connections"}})";
    return "HTTP/1.1 503 Service Unavailable\r\nServer: tandem\r\nContent-Type: "
           "application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body;
  }();
  if (options_.on_refused) options_.on_refused();
  beast::error_code ignored;
  // A fresh socket's send buffer takes the whole answer at once; what it does not take is lost,
  // which a refused client survives.
  socket.non_blocking(true, ignored);
  socket.write_some(asio::buffer(kResponse), ignored);
  socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

void HttpServer::StartDraining() {
  state_.draining = true;
  asio::post(acceptor_.get_executor(), [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
  });
}

}  // namespace tandem::frontend
