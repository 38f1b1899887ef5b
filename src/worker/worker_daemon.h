// The worker daemons' assembly, shared by tandem-decode-worker and tandem-prefill-worker: their
// flags, the engine (or engines, with --replicas) behind the tandem.v1.Worker service, the port
// file, sd_notify, and the drain on SIGTERM/SIGINT. Each daemon's main names itself and the roles
// it takes.
//
// Thread safety: RunWorkerDaemon is the whole of main.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"
#include "tandem/v1/worker.pb.h"

namespace tandem::worker {

struct WorkerDaemonSpec {
  std::string name;         // "tandem-decode-worker"
  std::string description;  // For --help.
  // The --role values it accepts ("aggregated", "prefill", "decode"); the first is the default.
  std::vector<std::string> roles;
};

// Parses flags, serves until SIGTERM/SIGINT, drains; the process's exit code.
int RunWorkerDaemon(int argc, char** argv, const WorkerDaemonSpec& spec);

// `name` as a role, when `allowed` lists it; InvalidArgument naming --role otherwise.
StatusOr<v1::WorkerRole> ParseWorkerRole(std::string_view name,
                                         const std::vector<std::string>& allowed);

}  // namespace tandem::worker
