#include "cli/child_process.h"

#include <fcntl.h>
#include <netdb.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <system_error>

extern char** environ;

namespace tandem::cli {

namespace fs = std::filesystem;

BlockedSignals::BlockedSignals() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGTERM);
  sigaddset(&set_, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set_, &previous_);
}

BlockedSignals::~BlockedSignals() { sigprocmask(SIG_SETMASK, &previous_, nullptr); }

int BlockedSignals::Wait(std::chrono::milliseconds timeout) const {
  timespec ts{static_cast<time_t>(timeout.count() / 1000),
              static_cast<long>((timeout.count() % 1000) * 1000000)};
  const int sig = sigtimedwait(&set_, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

bool IsStopSignal(int sig) { return sig == SIGINT || sig == SIGTERM; }

StatusOr<std::unique_ptr<Child>> Child::Start(
    std::string name, const std::vector<std::string>& argv,
    const std::vector<std::pair<std::string, std::string>>& env, const sigset_t& child_mask) {
  // Everything the child touches is prepared before fork: only async-signal-safe calls after.
  std::vector<char*> cargv;
  for (const std::string& arg : argv) cargv.push_back(const_cast<char*>(arg.c_str()));
  cargv.push_back(nullptr);
  std::map<std::string, std::string> merged;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const size_t eq = entry.find('=');
    if (eq != std::string::npos) merged[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  for (const auto& [key, value] : env) merged[key] = value;
  std::vector<std::string> entries;
  for (const auto& [key, value] : merged) entries.push_back(key + "=" + value);
  std::vector<char*> cenv;
  for (std::string& e : entries) cenv.push_back(e.data());
  cenv.push_back(nullptr);

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return InternalError("fork failed for " + name + ": " + std::strerror(errno));
  if (pid == 0) {
    ::sigprocmask(SIG_SETMASK, &child_mask, nullptr);
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // serve died before prctl took effect.
    ::dup2(STDERR_FILENO, STDOUT_FILENO);
    ::execve(cargv[0], cargv.data(), cenv.data());
    static constexpr char kMessage[] = "tandem serve: error: exec failed\n";
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
    ::_exit(127);
  }
  return std::unique_ptr<Child>(new Child(std::move(name), pid));
}

Child::~Child() {
  if (!exited_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

bool Child::clean_exit() const {
  return exited_ && WIFEXITED(status_) && WEXITSTATUS(status_) == 0;
}

int Child::exit_code() const {
  if (WIFEXITED(status_)) return WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
  return 255;
}

bool Child::Poll() {
  if (exited_) return true;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = status;
  }
  return exited_;
}

void Child::Signal(int sig) {
  if (!exited_) ::kill(pid_, sig);
}

std::string Child::DescribeExit() const {
  if (!exited_) return "running";
  if (WIFEXITED(status_)) return "exit code " + std::to_string(WEXITSTATUS(status_));
  if (WIFSIGNALED(status_)) {
    return "signal " + std::to_string(WTERMSIG(status_)) + " (" + strsignal(WTERMSIG(status_)) +
           ")";
  }
  return "status " + std::to_string(status_);
}

namespace {

constexpr char kTempPrefix[] = "tandem-serve-";

fs::path TempBase() {
  const char* base = std::getenv("TMPDIR");
  return base != nullptr && *base ? fs::path(base) : fs::path("/tmp");
}

}  // namespace

StatusOr<std::unique_ptr<TempDirectory>> TempDirectory::Create() {
  std::string pattern =
      (TempBase() / (std::string(kTempPrefix) + std::to_string(::getpid()) + "-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    return InternalError("cannot create a temporary directory " + pattern + ": " +
                         std::strerror(errno));
  }
  return std::unique_ptr<TempDirectory>(new TempDirectory(pattern));
}

TempDirectory::~TempDirectory() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

int TempDirectory::RemoveStale() {
  std::error_code ec;
  int removed = 0;
  const uid_t uid = ::getuid();
  for (const fs::directory_entry& entry : fs::directory_iterator(TempBase(), ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(kTempPrefix)) continue;
    // tandem-serve-PID-XXXXXX
    const std::string rest = name.substr(sizeof(kTempPrefix) - 1);
    const size_t dash = rest.find('-');
    if (dash == std::string::npos || dash == 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(rest.c_str(), &end, 10);
    if (end != rest.c_str() + dash || pid <= 0) continue;
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != uid) {
      continue;
    }
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // Still running.
    std::error_code rm;
    fs::remove_all(entry.path(), rm);
    if (!rm) ++removed;
  }
  return removed;
}

namespace {

// A connected TCP socket to host:port with 2 s send and receive timeouts, or -1.
int Connect(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const std::string port_text = std::to_string(port);
  if (::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &result) != 0) return -1;
  int fd = -1;
  for (addrinfo* a = result; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    timeval timeout{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(result);
  return fd;
}

}  // namespace

StatusOr<int> HttpGetStatus(const std::string& host, int port, const std::string& path) {
  const int fd = Connect(host, port);
  const std::string where = host + ":" + std::to_string(port);
  if (fd < 0) return UnavailableError("cannot connect to " + where);
  const std::string request =
      "GET " + path + " HTTP/1.1\r\nHost: " + where + "\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[512];
  while (response.find("\r\n") == std::string::npos) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  // "HTTP/1.1 200 OK"
  int code = 0;
  if (std::sscanf(response.c_str(), "HTTP/%*d.%*d %d", &code) != 1) {
    return UnavailableError("no HTTP status line from " + where);
  }
  return code;
}

}  // namespace tandem::cli
