// What every daemon does around its service: take SIGTERM/SIGINT on a dedicated thread (sigwait,
// no work in async handlers), tell systemd it is ready or stopping, and publish its bound ports.
//
// Thread safety: TerminationSignals::Wait may be called from one thread; the free functions are
// thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tandem/status.h"

namespace tandem {

// Blocks SIGTERM and SIGINT in the calling thread and, by inheritance, every thread it starts
// later, then takes them with sigwait on its own thread. Create it first in main, before other
// threads. Threads that libraries started before main would otherwise receive the signal; a
// handler that only forwards it to the sigwait thread covers them. The first signal wakes
// Wait(); a second one ends the process at once (exit code 1).
class TerminationSignals {
 public:
  static StatusOr<std::unique_ptr<TerminationSignals>> Install();
  ~TerminationSignals();
  TerminationSignals(const TerminationSignals&) = delete;
  TerminationSignals& operator=(const TerminationSignals&) = delete;

  // Blocks until the first signal; returns its number.
  int Wait();

 private:
  TerminationSignals();
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  int signal_ = 0;         // The first signal taken; 0 before.
  bool stopping_ = false;  // Set by the destructor to end Loop.
  std::thread thread_;
};

// sd_notify(3): READY=1 with a status line, STOPPING=1. No-ops outside systemd.
// A daemon serving requests shares its cores between the engine's OpenMP threads and its RPC
// threads; OpenMP threads that spin between parallel regions (libgomp's default) starve the
// RPC threads. libgomp reads OMP_WAIT_POLICY once, when it loads, so a daemon whose environment
// does not set it re-executes itself with OMP_WAIT_POLICY=passive. Call first thing in main;
// returns only when no re-execution was needed (or it failed, which is logged to stderr).
// The process is re-executed through the binary's real path (not /proc/self/exe), so it keeps
// its name for ps -C, pgrep and ss.
void ReexecWithPassiveOpenMp(char** argv);

// Raises the soft limit on open files to the hard limit (a server holds a descriptor per
// connection) and returns the soft limit now in force.
uint64_t RaiseOpenFileLimit();

void NotifyReady(const std::string& status);
void NotifyStopping();

// Writes {"name": port, ...} to `path` atomically (path.tmp, then rename), so a reader never
// sees a partial file.
Status WritePortFile(const std::string& path,
                     const std::vector<std::pair<std::string, int>>& ports);

}  // namespace tandem
