// Discovery: where the frontend learns which workers exist (ARCHITECTURE §3 "Discovery"). A
// Discovery reports workers as they appear and disappear to a listener, which adds them to its
// registry (Router, the frontend's WorkerPool). Implementations:
//   - static: a fixed list ("--workers h:p,h:p");
//   - file: a list in a file, one "host:port" per line ('#' starts a comment), read again when
//     it changes ("--workers-file"), so an operator adds and removes workers while serving;
//   - etcd (later): the registrations under /tandem/<cluster>/workers/, behind the same interface.
// A worker's name is its stable key: the same name is the same worker.
//
// Thread safety: Start and Stop from one thread. The listener is called from Start (the workers
// known then) and afterwards from the discovery's own thread, one call at a time.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem::router {

struct WorkerEndpoint {
  std::string name;     // Stable key (static and file lists: the address).
  std::string address;  // gRPC "host:port".

  friend bool operator==(const WorkerEndpoint&, const WorkerEndpoint&) = default;
};

class DiscoveryListener {
 public:
  virtual ~DiscoveryListener() = default;
  virtual void OnWorkerAdded(const WorkerEndpoint& worker) = 0;
  virtual void OnWorkerRemoved(const std::string& name) = 0;
};

class Discovery {
 public:
  virtual ~Discovery() = default;
  // Reports every worker known now to `listener` before returning, then changes until Stop.
  // `listener` must outlive Stop.
  virtual Status Start(DiscoveryListener* listener) = 0;
  // No listener call runs after Stop returns.
  virtual void Stop() = 0;
  // For logs: "static", "file:PATH".
  virtual std::string description() const = 0;
};

// "host:port[,host:port...]" -> endpoints. Empty items, a missing or non-numeric port, or a
// port outside 1..65535 are InvalidArgument naming `option`. Duplicates are refused too.
StatusOr<std::vector<std::string>> ParseEndpoints(std::string_view list, std::string_view option);

// A worker list file's text -> endpoints: one per line, blank lines and '#' comments skipped.
// Errors name `path` and the line.
StatusOr<std::vector<std::string>> ParseWorkersFile(std::string_view text, std::string_view path);

std::unique_ptr<Discovery> CreateStaticDiscovery(std::vector<std::string> addresses);
// The file must be readable and valid at Start; later a file that is missing or invalid leaves
// the workers as they were (logged once per change of the file's state).
std::unique_ptr<Discovery> CreateFileDiscovery(
    std::string path, std::chrono::milliseconds poll_interval = std::chrono::milliseconds(500));

}  // namespace tandem::router
