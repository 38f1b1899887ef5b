#include "worker/replica_set.h"

#include <nlohmann/json.hpp>

#include <thread>

#include "common/parse.h"
#include "common/status_macros.h"

namespace tandem::worker {

StatusOr<std::vector<int>> ParseReplicaPorts(const std::string& text, int replicas,
                                             const std::string& flag) {
  TANDEM_ASSIGN_OR_RETURN(std::vector<int32_t> parsed, ParseIntList(text, flag));
  std::vector<int> ports(parsed.begin(), parsed.end());
  for (const int port : ports) {
    if (port < 0 || port > 65535) {
      return InvalidArgumentError(flag + ": " + std::to_string(port) + " is not a port (0..65535)");
    }
  }
  if (ports.size() == 1) {
    const int first = ports[0];
    if (first > 0 && first + replicas - 1 > 65535) {
      return InvalidArgumentError(flag + ": " + std::to_string(replicas) + " ports from " +
                                  std::to_string(first) + " pass 65535");
    }
    ports.clear();
    for (int i = 0; i < replicas; ++i) ports.push_back(first == 0 ? 0 : first + i);
  }
  if (static_cast<int>(ports.size()) != replicas) {
    return InvalidArgumentError(flag + ": " + std::to_string(ports.size()) + " ports for " +
                                std::to_string(replicas) + " replicas");
  }
  return ports;
}

StatusOr<std::unique_ptr<ReplicaSet>> ReplicaSet::Create(
    const ReplicaSetOptions& options,
    const std::function<StatusOr<std::unique_ptr<Engine>>(int)>& make_engine) {
  if (options.replicas < 1) return InvalidArgumentError("--replicas must be >= 1");
  if (static_cast<int>(options.ports.size()) != options.replicas ||
      static_cast<int>(options.metrics_ports.size()) != options.replicas) {
    return InvalidArgumentError("one gRPC and one metrics port per replica");
  }
  auto set = std::unique_ptr<ReplicaSet>(new ReplicaSet());
  for (int i = 0; i < options.replicas; ++i) {
    const std::string who = options.replicas > 1 ? "replica " + std::to_string(i) + ": " : "";
    StatusOr<std::unique_ptr<Engine>> engine = make_engine(i);
    if (!engine.ok()) return engine.status().WithContext(who + "engine");
    WorkerServerOptions server = options.server;
    server.port = options.ports[i];
    server.metrics_port = options.metrics_ports[i];
    if (options.replicas > 1) server.service.worker_id += "/" + std::to_string(i);
    StatusOr<std::unique_ptr<WorkerServer>> started =
        WorkerServer::Create(std::move(engine).value(), server);
    if (!started.ok()) return started.status().WithContext(who + "server");
    set->servers_.push_back(std::move(started).value());
  }
  return set;
}

std::string ReplicaSet::PortsJson() const {
  nlohmann::json replicas = nlohmann::json::array();
  for (const auto& s : servers_) {
    replicas.push_back({{"grpc_port", s->grpc_port()}, {"metrics_port", s->metrics_port()}});
  }
  nlohmann::json j = {{"grpc_port", servers_.front()->grpc_port()},
                      {"metrics_port", servers_.front()->metrics_port()},
                      {"replicas", std::move(replicas)}};
  return j.dump() + "\n";
}

void ReplicaSet::Drain(std::chrono::milliseconds timeout) {
  std::vector<std::thread> drains;
  drains.reserve(servers_.size());
  for (auto& s : servers_) drains.emplace_back([&s, timeout] { s->Drain(timeout); });
  for (auto& t : drains) t.join();
}

}  // namespace tandem::worker
