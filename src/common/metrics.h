// Prometheus metrics of a daemon: one registry, served over HTTP at /metrics (prometheus-cpp's
// exposer). Metric names follow `tandem_<component>_<what>_<unit>` (ARCHITECTURE §4).
//
// Thread safety: registry() and the metrics built from it are thread-safe (prometheus-cpp).
#pragma once

#include <memory>
#include <string>

#include "tandem/status.h"

namespace prometheus {
class Exposer;
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

 private:
  MetricsServer(std::string host, std::shared_ptr<prometheus::Registry> registry,
                std::unique_ptr<prometheus::Exposer> exposer, int port);

  std::string host_;
  // Shared: the exposer holds the registry weakly (prometheus-cpp's RegisterCollectable API).
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_;
};

}  // namespace tandem
