// What `tandem serve` needs to run daemons as child processes: signals taken synchronously, a
// child process that cannot leak, a private temporary directory, and a readiness probe (an HTTP
// status).
//
// Thread safety: serve is single-threaded; none of these are for use from several threads.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tandem/status.h"

namespace tandem::cli {

// Blocks SIGINT, SIGTERM and SIGCHLD for the life of the object, so serve takes them
// synchronously with sigtimedwait (no handler, no self-pipe) and restores the mask afterwards.
class BlockedSignals {
 public:
  BlockedSignals();
  ~BlockedSignals();
  BlockedSignals(const BlockedSignals&) = delete;
  BlockedSignals& operator=(const BlockedSignals&) = delete;

  // Waits up to `timeout` for one of the signals; returns it, or 0 on timeout.
  int Wait(std::chrono::milliseconds timeout) const;

  const sigset_t& previous() const { return previous_; }

 private:
  sigset_t set_;
  sigset_t previous_;
};

bool IsStopSignal(int sig);

// One daemon process. Owns it: a child still running when the object goes away (an error path)
// is killed and reaped, so serve never leaks one.
class Child {
 public:
  // Forks and execs `argv` (argv[0] is the binary's path) with serve's environment plus `env`.
  // The child runs with the signal mask serve had before blocking, in its own process group,
  // with stdout joined to stderr (serve's stdout carries only its ready line) and SIGTERM should
  // serve die.
  static StatusOr<std::unique_ptr<Child>> Start(
      std::string name, const std::vector<std::string>& argv,
      const std::vector<std::pair<std::string, std::string>>& env, const sigset_t& child_mask);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  bool exited() const { return exited_; }
  bool clean_exit() const;
  // The exit code, or 128 + the signal that ended it.
  int exit_code() const;

  // Reaps the child if it has exited; returns exited().
  bool Poll();
  void Signal(int sig);
  // "exit code 1", "signal 9 (Killed)".
  std::string DescribeExit() const;

 private:
  Child(std::string name, pid_t pid) : name_(std::move(name)), pid_(pid) {}

  std::string name_;
  pid_t pid_;
  bool exited_ = false;
  int status_ = 0;
};

// A private temporary directory, removed with its contents by the destructor. Its name carries
// serve's pid ($TMPDIR/tandem-serve-PID-XXXXXX), so a later serve can remove what a killed one
// left behind (RemoveStale).
class TempDirectory {
 public:
  static StatusOr<std::unique_ptr<TempDirectory>> Create();
  ~TempDirectory();
  TempDirectory(const TempDirectory&) = delete;
  TempDirectory& operator=(const TempDirectory&) = delete;
  const std::filesystem::path& path() const { return path_; }

  // Removes the directories of serve processes that no longer run; returns how many.
  static int RemoveStale();

 private:
  explicit TempDirectory(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// One plain HTTP/1.1 GET with a 2 s timeout; returns the status code.
StatusOr<int> HttpGetStatus(const std::string& host, int port, const std::string& path);

}  // namespace tandem::cli
