// A daemon under test: started with posix_spawn on 127.0.0.1 with ephemeral ports and a port
// file, waited for (port file, then grpc.health.v1 SERVING), signalled, reaped. The destructor
// kills it if it still runs (Mooncake's process handler).
//
// Thread safety: one thread drives a DaemonProcess.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "tandem/status.h"

namespace tandem::testing {

using Clock = std::chrono::steady_clock;

// Polls `ready` (every few milliseconds) until it returns true or `timeout` passes; true when it
// became true. For conditions that nothing can signal, such as a file appearing.
template <typename Predicate>
bool WaitFor(Predicate ready, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!ready()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

struct DaemonOptions {
  // Added to the test's environment.
  std::vector<std::pair<std::string, std::string>> env;
  // Wait for grpc.health.v1 SERVING (else only for the port file).
  bool wait_serving = true;
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
};

class DaemonProcess {
 public:
  // Starts `binary` with `args` plus --port-file (in a fresh temporary directory), waits for the
  // port file and for the health service to report SERVING, each within `timeout`.
  static StatusOr<std::unique_ptr<DaemonProcess>> Start(
      const std::string& binary, std::vector<std::string> args,
      std::chrono::milliseconds timeout = std::chrono::seconds(60));
  static StatusOr<std::unique_ptr<DaemonProcess>> Start(const std::string& binary,
                                                        std::vector<std::string> args,
                                                        const DaemonOptions& options);
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  pid_t pid() const { return pid_; }
  int grpc_port() const { return grpc_port_; }
  // gRPC ports of every replica the port file lists ("replicas"; else the one grpc_port).
  const std::vector<int>& replica_grpc_ports() const { return replica_grpc_ports_; }
  int metrics_port() const { return metrics_port_; }
  std::string grpc_address() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  // What the daemon wrote to stderr so far.
  std::string log() const;

  void Signal(int sig);
  // Waits for the process to exit; its exit code (128 + signal when killed), or nullopt at the
  // timeout.
  std::optional<int> WaitExit(std::chrono::milliseconds timeout);

  // "SERVING", "NOT_SERVING", ... or the RPC error's message.
  // The overall status, or that of `service` (e.g. "tandem.v1.Inference").
  std::string HealthStatus(const std::string& service = "");

 private:
  DaemonProcess(pid_t pid, std::filesystem::path dir) : pid_(pid), dir_(std::move(dir)) {}
  // Reaps the process if it exited; true when it did.
  bool Reap();

  pid_t pid_;
  std::filesystem::path dir_;
  std::optional<int> exit_code_;
  int grpc_port_ = 0;
  std::vector<int> replica_grpc_ports_;
  int metrics_port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

// GET http://127.0.0.1:port/path; the body, or an error.
StatusOr<std::string> HttpGet(int port, const std::string& path);

// Waits until a frontend's GET /health (on `port`) lists `up` workers up; true when it did.
bool WaitForWorkersUp(int port, size_t up,
                      std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Polls GET /metrics on `port` until `ready(text)` holds or `timeout` passes; true when it held.
// `last` (may be null) receives the last text read, for the failure message.
template <typename Predicate>
bool WaitForMetrics(int port, Predicate ready, std::string* last,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  std::string text;
  const bool held = WaitFor(
      [&] {
        auto body = HttpGet(port, "/metrics");
        text = body.ok() ? *body : "";
        return ready(text);
      },
      timeout);
  if (last != nullptr) *last = std::move(text);
  return held;
}

}  // namespace tandem::testing
