// Supervisor: the daemons `tandem serve` runs, kept running. A daemon that exits while serving
// is restarted after a backoff (0.5 s, doubling to 30 s) while the others go on serving; one
// that keeps failing (`max_restarts` restarts in a row, each run shorter than a minute) is given
// up. Serve cannot go on once the frontend, or every worker, is given up. Stop ends them in
// order: the frontend first (it drains its streams while the workers still answer), then the
// workers; what outlives its deadline is killed.
//
// Thread safety: one thread (serve's) drives a Supervisor.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/child_process.h"
#include "tandem/status.h"

namespace tandem::cli {

struct RestartPolicy {
  int max_restarts = 5;  // Restarts in a row before a daemon is given up; 0: never restart.
  std::chrono::milliseconds first_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  // A daemon that ran this long before exiting starts its count of restarts afresh.
  std::chrono::seconds stable_after{60};
};

// A daemon serve keeps running.
struct DaemonSpec {
  enum class Role { kFrontend, kWorker };
  std::string name;  // "frontend", "worker-0": in serve's messages, and the daemon's log name.
  Role role = Role::kWorker;
  // The command line of each start (the ports a restart reuses are known after the first).
  std::function<std::vector<std::string>()> argv;
  // Added to serve's environment (TANDEM_LOG_NAME is set to `name`).
  std::vector<std::pair<std::string, std::string>> env;
};

class Supervisor {
 public:
  Supervisor(const RestartPolicy& policy, const BlockedSignals& signals)
      : policy_(policy), signals_(signals) {}
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts a daemon for the first time.
  Status Add(DaemonSpec spec);

  // During start-up, when nothing is restarted: the first daemon found to have exited, or null.
  const Child* FindExited();

  // While serving: reaps daemons that exited, restarts those whose backoff has passed. An error
  // once serve cannot go on (the frontend, or every worker, given up).
  Status Tick();

  // Stops everything in order, each group within `timeout` (then SIGKILL). A second SIGINT or
  // SIGTERM meanwhile kills what still runs at once. True when every daemon that was running
  // exited 0 (a frontend that had to cut requests at its drain deadline exits 1).
  bool Stop(std::chrono::duration<double> timeout);

 private:
  struct Slot {
    DaemonSpec spec;
    std::unique_ptr<Child> child;  // Null while waiting to restart, or given up.
    std::chrono::steady_clock::time_point started;
    std::chrono::steady_clock::time_point restart_at;
    int restarts_in_a_row = 0;
    bool given_up = false;
  };

  Status StartSlot(Slot& slot);
  void OnExit(Slot& slot, std::chrono::steady_clock::time_point now);

  const RestartPolicy policy_;
  const BlockedSignals& signals_;
  std::vector<Slot> slots_;
};

}  // namespace tandem::cli
