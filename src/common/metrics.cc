#include "common/metrics.h"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <thread>
#include <utility>

namespace tandem {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct MetricsServer::Impl {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor{io};
  std::thread thread;
};

namespace {

// One scrape: read a request, answer it, close.
class Scrape : public std::enable_shared_from_this<Scrape> {
 public:
  Scrape(asio::ip::tcp::socket socket, const MetricsServer& server)
      : stream_(std::move(socket)), server_(server) {}

  void Start() {
    stream_.expires_after(std::chrono::seconds(10));
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (!ec) self->Answer();
                     });
  }

 private:
  void Answer() {
    const bool found = request_.target() == "/metrics" || request_.target().starts_with("/metrics?");
    response_.version(request_.version());
    response_.keep_alive(false);
    response_.result(found ? http::status::ok : http::status::not_found);
    response_.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    response_.body() = found ? server_.Serialize() : "not found\n";
    response_.prepare_payload();
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code, size_t) {
                        beast::error_code ignored;
                        self->stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send,
                                                        ignored);
                      });
  }

  beast::tcp_stream stream_;
  const MetricsServer& server_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
};

}  // namespace

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl, int port)
    : impl_(std::move(impl)), registry_(std::make_shared<prometheus::Registry>()), port_(port) {}

StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Create(const std::string& host, int port) {
  if (port < 0 || port > 65535) {
    return InvalidArgumentError("metrics port " + std::to_string(port) + " is out of range");
  }
  const std::string address = host + ":" + std::to_string(port);
  beast::error_code ec;
  const asio::ip::address ip = asio::ip::make_address(host, ec);
  if (ec) return InvalidArgumentError("metrics host '" + host + "' is not an IP address");
  auto impl = std::make_unique<Impl>();
  const asio::ip::tcp::endpoint endpoint(ip, static_cast<uint16_t>(port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return UnavailableError("cannot serve metrics on " + address + ": " + ec.message());
  const int bound = impl->acceptor.local_endpoint().port();
  std::unique_ptr<MetricsServer> server(new MetricsServer(std::move(impl), bound));
  server->Accept();
  Impl* raw = server->impl_.get();
  raw->thread = std::thread([raw] { raw->io.run(); });
  return server;
}

void MetricsServer::Accept() {
  impl_->acceptor.async_accept([this](beast::error_code ec, asio::ip::tcp::socket socket) {
    if (ec) return;  // Closed: the server is stopping.
    std::make_shared<Scrape>(std::move(socket), *this)->Start();
    Accept();
  });
}

std::string MetricsServer::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

MetricsServer::~MetricsServer() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace tandem
