#include "common/lifecycle.h"

#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <system_error>

#include "common/file_util.h"
#include "common/logging.h"

namespace tandem {
namespace {

sigset_t TerminationSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// The thread that sigwaits, as a kernel thread id.
std::atomic<pid_t> g_signal_thread{0};

// Threads started before main (OpenBLAS starts its pool when the library loads) do not block the
// signals, and the kernel may hand a process-directed signal to one of them. This handler runs
// there and only forwards the signal to the sigwait thread, where it is blocked, so sigwait
// takes it. tgkill is a plain system call: async-signal-safe.
void ForwardToSignalThread(int sig) {
  const pid_t target = g_signal_thread.load();
  if (target != 0) syscall(SYS_tgkill, getpid(), target, sig);
}

}  // namespace

TerminationSignals::TerminationSignals() = default;

StatusOr<std::unique_ptr<TerminationSignals>> TerminationSignals::Install() {
  const sigset_t set = TerminationSet();
  if (const int err = pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0) {
    return InternalError(std::string("cannot block termination signals: ") + std::strerror(err));
  }
  auto signals = std::unique_ptr<TerminationSignals>(new TerminationSignals());
  std::promise<void> started;
  signals->thread_ = std::thread([s = signals.get(), &started] {
    g_signal_thread = static_cast<pid_t>(syscall(SYS_gettid));
    started.set_value();
    s->Loop();
  });
  started.get_future().wait();
  struct sigaction action = {};
  action.sa_handler = ForwardToSignalThread;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  if (sigaction(SIGTERM, &action, nullptr) != 0 || sigaction(SIGINT, &action, nullptr) != 0) {
    return InternalError(std::string("cannot install signal handlers: ") + std::strerror(errno));
  }
  return signals;
}

TerminationSignals::~TerminationSignals() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  // The signal is blocked everywhere, so this one goes to our sigwait and ends it.
  pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
  g_signal_thread = 0;
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
}

void TerminationSignals::Loop() {
  const sigset_t set = TerminationSet();
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    if (signal_ != 0) {
      spdlog::warn("second signal, exiting now signal={}", Quoted(strsignal(sig)));
      spdlog::default_logger()->flush();
      _exit(1);
    }
    signal_ = sig;
    lock.unlock();
    spdlog::info("signal received, draining signal={}", Quoted(strsignal(sig)));
    cv_.notify_all();
  }
}

int TerminationSignals::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return signal_ != 0; });
  return signal_;
}

void NotifyReady(const std::string& status) { sd_notify(0, ("READY=1\nSTATUS=" + status).c_str()); }

void NotifyStopping() { sd_notify(0, "STOPPING=1\nSTATUS=draining"); }

Status WritePortFile(const std::string& path,
                     const std::vector<std::pair<std::string, int>>& ports) {
  std::string json = "{";
  for (size_t i = 0; i < ports.size(); ++i) {
    json += (i ? ", \"" : "\"") + ports[i].first + "\": " + std::to_string(ports[i].second);
  }
  json += "}\n";
  return WriteFileAtomically(path, json);
}

void ReexecWithPassiveOpenMp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  ::setenv("OMP_WAIT_POLICY", "passive", /*overwrite=*/0);
  // The kernel names a process after the file it executes: through /proc/self/exe every daemon
  // would be called "exe". The link's target keeps the name.
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0) {
    std::fprintf(stderr, "warning: cannot read /proc/self/exe: %s\n", std::strerror(errno));
    return;
  }
  path[n] = '\0';
  ::execv(path, argv);
  std::fprintf(stderr, "warning: cannot re-execute with OMP_WAIT_POLICY=passive: %s\n",
               std::strerror(errno));
}

uint64_t RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur == RLIM_INFINITY ? uint64_t{1} << 20
                                         : static_cast<uint64_t>(limit.rlim_cur);
}

}  // namespace tandem
