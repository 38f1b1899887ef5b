#include "common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

namespace tandem {

MetricsServer::MetricsServer(std::string host, std::shared_ptr<prometheus::Registry> registry,
                             std::unique_ptr<prometheus::Exposer> exposer, int port)
    : host_(std::move(host)),
      registry_(std::move(registry)),
      exposer_(std::move(exposer)),
      port_(port) {}

MetricsServer::~MetricsServer() {
  // civetweb's listener polls in 2 s rounds and only notices the stop request between them, so a
  // plain shutdown takes up to 2 s. A connection wakes the poll at once: keep connecting until
  // the exposer is gone.
  std::atomic<bool> stopped{false};
  std::thread waker([&] {
    while (!stopped) {
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      if (fd >= 0) {
        sockaddr_in addr = {};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<uint16_t>(port_));
        // Its own host when given as an IPv4 address, else loopback (0.0.0.0 accepts it).
        if (inet_pton(AF_INET, host_.c_str(), &addr.sin_addr) != 1 ||
            addr.sin_addr.s_addr == htonl(INADDR_ANY)) {
          addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        }
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
        close(fd);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  exposer_.reset();
  stopped = true;
  waker.join();
}

StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Create(const std::string& host, int port) {
  if (port < 0 || port > 65535) {
    return InvalidArgumentError("metrics port " + std::to_string(port) + " is out of range");
  }
  const std::string address = host + ":" + std::to_string(port);
  std::unique_ptr<prometheus::Exposer> exposer;
  // civetweb reports a failed bind by throwing from the exposer's constructor.
  try {
    exposer = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return UnavailableError("cannot serve metrics on " + address + ": " + e.what());
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) return UnavailableError("cannot serve metrics on " + address);
  auto registry = std::make_shared<prometheus::Registry>();
  exposer->RegisterCollectable(registry);
  return std::unique_ptr<MetricsServer>(
      new MetricsServer(host, std::move(registry), std::move(exposer), ports.front()));
}

}  // namespace tandem
