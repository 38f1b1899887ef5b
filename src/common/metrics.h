// Prometheus metrics of a daemon: one registry, served over HTTP at /metrics by a small
// Boost.Asio server on its own thread. Metric names follow `tandem_<component>_<what>_<unit>`
// (ARCHITECTURE §4).
//
// prometheus-cpp's own exposer (civetweb) is not used: civetweb starts its threads with a fixed
// 100 KiB stack, too small once libcublasLt's static TLS is in the process, and its listener
// notices a stop only every 2 s.
//
// Thread safety: registry() and the metrics built from it are thread-safe (prometheus-cpp).
#pragma once

#include <memory>
#include <string>

#include "tandem/status.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace tandem {

class MetricsServer {
 public:
  // Listens on host:port (port 0 picks a free one) and serves the registry at /metrics.
  // Unavailable when the address cannot be bound.
  static StatusOr<std::unique_ptr<MetricsServer>> Create(const std::string& host, int port);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  prometheus::Registry& registry() { return *registry_; }
  int port() const { return port_; }

  // The registry in Prometheus' text format.
  std::string Serialize() const;

 private:
  struct Impl;
  MetricsServer(std::unique_ptr<Impl> impl, int port);
  void Accept();

  std::unique_ptr<Impl> impl_;
  std::shared_ptr<prometheus::Registry> registry_;
  int port_;
};

}  // namespace tandem
