#include "cli/serve_command.h"

#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "common/file_util.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "model/demo_model.h"

namespace tandem::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kWorkerBinary[] = "tandem-decode-worker";
constexpr char kFrontendBinary[] = "tandem-frontend";
constexpr char kDemoModelName[] = "demo";

struct ServeArgs {
  std::string model;  // Empty: the demo model.
  int workers = 1;
  std::string host = "127.0.0.1";
  int port = 8000;
  int grpc_port = -1;  // -1: 8001, or ephemeral when --port is 0.
  std::string port_file;
  std::string api_key;
  std::string served_model_name;
  uint64_t seed = 0;
  std::string weights;  // Empty: checkpoint for --model, random for the demo.
  std::string state_dir;
  std::string router_mode;
  int num_blocks = 0;
  double startup_timeout_s = 120;
  double drain_timeout_s = 60;
  std::string log_level = "info";
};

// ---- Signals ----

// Blocks SIGINT, SIGTERM and SIGCHLD for the life of the object, so serve takes them
// synchronously with sigtimedwait (no handler, no self-pipe) and restores the mask afterwards.
class BlockedSignals {
 public:
  BlockedSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set_, &previous_);
  }
  ~BlockedSignals() { sigprocmask(SIG_SETMASK, &previous_, nullptr); }
  BlockedSignals(const BlockedSignals&) = delete;
  BlockedSignals& operator=(const BlockedSignals&) = delete;

  // Waits up to `timeout` for one of the signals; returns it, or 0 on timeout.
  int Wait(std::chrono::milliseconds timeout) const {
    timespec ts{static_cast<time_t>(timeout.count() / 1000),
                static_cast<long>((timeout.count() % 1000) * 1000000)};
    const int sig = sigtimedwait(&set_, nullptr, &ts);
    return sig > 0 ? sig : 0;
  }

  const sigset_t& previous() const { return previous_; }

 private:
  sigset_t set_;
  sigset_t previous_;
};

bool IsStopSignal(int sig) { return sig == SIGINT || sig == SIGTERM; }

// ---- Child processes ----

// One daemon started by serve. Owns the process: a child still running when the object goes
// away (an error path) is killed and reaped, so serve never leaks one.
class Child {
 public:
  // Forks and execs `argv` (argv[0] is the binary's path). The child runs with the signal mask
  // serve had before blocking, in its own process group, with stdout joined to stderr (serve's
  // stdout carries only its ready line) and SIGTERM should serve die.
  static StatusOr<std::unique_ptr<Child>> Start(std::string name,
                                                const std::vector<std::string>& argv,
                                                const sigset_t& child_mask) {
    // Everything the child touches is prepared before fork: only async-signal-safe calls after.
    std::vector<char*> cargv;
    for (const std::string& arg : argv) cargv.push_back(const_cast<char*>(arg.c_str()));
    cargv.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) return InternalError("fork failed for " + name + ": " + std::strerror(errno));
    if (pid == 0) {
      ::sigprocmask(SIG_SETMASK, &child_mask, nullptr);
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);  // serve died before prctl took effect.
      ::dup2(STDERR_FILENO, STDOUT_FILENO);
      ::execv(cargv[0], cargv.data());
      static constexpr char kMessage[] = "tandem serve: error: exec failed\n";
      [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
      ::_exit(127);
    }
    return std::unique_ptr<Child>(new Child(std::move(name), pid));
  }

  ~Child() {
    if (!exited_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  bool exited() const { return exited_; }
  bool clean_exit() const { return exited_ && WIFEXITED(status_) && WEXITSTATUS(status_) == 0; }

  // Reaps the child if it has exited; returns exited().
  bool Poll() {
    if (exited_) return true;
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = status;
    }
    return exited_;
  }

  void Signal(int sig) {
    if (!exited_) ::kill(pid_, sig);
  }

  // "exit code 1", "signal 9 (Killed)".
  std::string DescribeExit() const {
    if (!exited_) return "running";
    if (WIFEXITED(status_)) return "exit code " + std::to_string(WEXITSTATUS(status_));
    if (WIFSIGNALED(status_)) {
      return "signal " + std::to_string(WTERMSIG(status_)) + " (" + strsignal(WTERMSIG(status_)) +
             ")";
    }
    return "status " + std::to_string(status_);
  }

 private:
  Child(std::string name, pid_t pid) : name_(std::move(name)), pid_(pid) {}

  std::string name_;
  pid_t pid_;
  bool exited_ = false;
  int status_ = 0;
};

// A private temporary directory (port files), removed with its contents.
class TempDirectory {
 public:
  static StatusOr<std::unique_ptr<TempDirectory>> Create() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base ? base : "/tmp") + "/tandem-serve-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      return InternalError("cannot create a temporary directory " + pattern + ": " +
                           std::strerror(errno));
    }
    return std::unique_ptr<TempDirectory>(new TempDirectory(pattern));
  }
  ~TempDirectory() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDirectory(const TempDirectory&) = delete;
  TempDirectory& operator=(const TempDirectory&) = delete;
  const fs::path& path() const { return path_; }

 private:
  explicit TempDirectory(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
};

// ---- The cluster ----

// The children serve started; stops them in order (frontend first, so it drains its streams
// while the workers still answer, then the workers).
struct Cluster {
  std::unique_ptr<Child> frontend;
  std::vector<std::unique_ptr<Child>> workers;

  std::vector<Child*> All() const {
    std::vector<Child*> all;
    if (frontend != nullptr) all.push_back(frontend.get());
    for (const auto& w : workers) all.push_back(w.get());
    return all;
  }

  // The first child found to have exited, or null.
  Child* FindExited() const {
    for (Child* c : All()) {
      if (c->Poll()) return c;
    }
    return nullptr;
  }

  // SIGTERM to each group in turn, SIGKILL to what outlives the deadline. True when every child
  // that was still running exited 0.
  bool Stop(const BlockedSignals& signals, std::chrono::duration<double> drain_timeout) {
    bool clean = true;
    std::vector<std::vector<Child*>> groups;
    if (frontend != nullptr) groups.push_back({frontend.get()});
    std::vector<Child*> worker_group;
    for (const auto& w : workers) worker_group.push_back(w.get());
    groups.push_back(worker_group);
    for (const std::vector<Child*>& group : groups) {
      std::vector<Child*> running;
      for (Child* c : group) {
        if (!c->Poll()) {
          c->Signal(SIGTERM);
          running.push_back(c);
        }
      }
      const auto deadline =
          Clock::now() + std::chrono::duration_cast<Clock::duration>(drain_timeout);
      for (Child* c : running) {
        while (!c->Poll()) {
          if (Clock::now() >= deadline) {
            spdlog::error("child did not stop in time, killing name={} pid={}", c->name(),
                          c->pid());
            c->Signal(SIGKILL);
            while (!c->Poll()) signals.Wait(std::chrono::milliseconds(50));
            break;
          }
          // SIGCHLD wakes this; a second SIGINT/SIGTERM while draining is absorbed.
          signals.Wait(std::chrono::milliseconds(50));
        }
        if (!c->clean_exit()) {
          spdlog::warn("child stopped uncleanly name={} pid={} status={}", c->name(), c->pid(),
                       c->DescribeExit());
          clean = false;
        }
      }
    }
    return clean;
  }
};

// Why a start-up wait ended early.
enum class WaitEnd { kReady, kInterrupted };

// Checks the children and the signals once; called between attempts of every start-up wait.
// Fails when a child has died; reports an interruption by SIGINT/SIGTERM.
StatusOr<std::optional<WaitEnd>> CheckStartup(const Cluster& cluster, const BlockedSignals& signals,
                                              std::chrono::milliseconds pause) {
  if (Child* dead = cluster.FindExited(); dead != nullptr) {
    return UnavailableError(dead->name() + " exited during start-up (" + dead->DescribeExit() +
                            "); its log is above");
  }
  const int sig = signals.Wait(pause);
  if (IsStopSignal(sig)) return std::optional<WaitEnd>(WaitEnd::kInterrupted);
  return std::optional<WaitEnd>();
}

// Waits for a daemon's port file (written atomically once it has bound its ports).
StatusOr<WaitEnd> WaitForPortFile(const fs::path& path, const std::string& who,
                                  const Cluster& cluster, const BlockedSignals& signals,
                                  Clock::time_point deadline, nlohmann::json* ports) {
  while (true) {
    std::error_code ec;
    if (fs::exists(path, ec)) {
      StatusOr<std::string> text = ReadFileToString(path);
      if (text.ok()) {
        *ports = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
        if (ports->is_object()) return WaitEnd::kReady;
      }
    }
    if (Clock::now() >= deadline) {
      return DeadlineExceededError(who + " did not write its port file " + path.string() +
                                   " in time (see --startup-timeout)");
    }
    TANDEM_ASSIGN_OR_RETURN(std::optional<WaitEnd> end,
                            CheckStartup(cluster, signals, std::chrono::milliseconds(50)));
    if (end.has_value()) return *end;
  }
}

StatusOr<int> PortField(const nlohmann::json& ports, const char* key, const std::string& who) {
  auto it = ports.find(key);
  if (it == ports.end() || !it->is_number_integer() || it->get<int64_t>() <= 0 ||
      it->get<int64_t>() > 65535) {
    return InternalError(who + "'s port file has no valid \"" + key + "\": " + ports.dump());
  }
  return it->get<int>();
}

// One plain HTTP/1.1 GET; returns the status code. Serve needs no HTTP library for this.
StatusOr<int> HttpGetStatus(const std::string& host, int port, const std::string& path,
                            const std::string& api_key) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const std::string port_text = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &result); rc != 0) {
    return UnavailableError("cannot resolve " + host + ": " + gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(result, ::freeaddrinfo);
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
  if (fd < 0) return UnavailableError("cannot connect to " + host + ":" + port_text);
  std::string request =
      "GET " + path + " HTTP/1.1\r\nHost: " + host + ":" + port_text + "\r\nConnection: close\r\n";
  if (!api_key.empty()) request += "Authorization: Bearer " + api_key + "\r\n";
  request += "\r\n";
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
    return UnavailableError("no HTTP status line from " + host + ":" + port_text);
  }
  return code;
}

StatusOr<WaitEnd> WaitForHealth(const std::string& host, int port, const std::string& api_key,
                                const Cluster& cluster, const BlockedSignals& signals,
                                Clock::time_point deadline) {
  Status last = UnavailableError("not asked yet");
  while (true) {
    StatusOr<int> code = HttpGetStatus(host, port, "/health", api_key);
    if (code.ok() && *code == 200) return WaitEnd::kReady;
    last = code.ok() ? UnavailableError("GET /health answered " + std::to_string(*code))
                     : code.status();
    if (Clock::now() >= deadline) {
      return DeadlineExceededError("the frontend did not become healthy in time: " +
                                   last.message());
    }
    TANDEM_ASSIGN_OR_RETURN(std::optional<WaitEnd> end,
                            CheckStartup(cluster, signals, std::chrono::milliseconds(100)));
    if (end.has_value()) return *end;
  }
}

// ---- Paths ----

StatusOr<fs::path> BinaryDirectory() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return InternalError("cannot read /proc/self/exe: " + ec.message());
  return self.parent_path();
}

StatusOr<fs::path> FindDaemon(const fs::path& bin_dir, const char* name) {
  const fs::path path = bin_dir / name;
  if (::access(path.c_str(), X_OK) != 0) {
    return NotFoundError(std::string(name) + " not found next to tandem (looked for " +
                         path.string() + "); build with -DTANDEM_SERVICES=ON");
  }
  return path;
}

StatusOr<fs::path> DefaultStateDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg == '/') {
    return fs::path(xdg) / "tandem";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return fs::path(home) / ".cache" / "tandem";
  }
  return FailedPreconditionError("neither XDG_CACHE_HOME nor HOME is set: give --state-dir");
}

// Writes `text` to `path` through a temporary file and a rename, as the daemons do.
Status WritePortFile(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.close();
    if (!out) return InternalError("cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return InternalError("cannot rename " + tmp.string() + ": " + ec.message());
  return OkStatus();
}

// The host clients connect to: a wildcard address is reached through loopback.
std::string ConnectHost(const std::string& host) {
  if (host == "0.0.0.0" || host.empty()) return "127.0.0.1";
  if (host == "::" || host == "[::]") return "::1";
  return host;
}

std::string UrlHost(const std::string& host) {
  return host.find(':') != std::string::npos && !host.starts_with('[') ? "[" + host + "]" : host;
}

// ---- serve ----

struct Resolved {
  fs::path model_dir;
  std::string model_name;
  bool random_weights = false;
};

StatusOr<Resolved> ResolveModel(const ServeArgs& args) {
  Resolved r;
  if (args.weights != "" && args.weights != "checkpoint" && args.weights != "random") {
    return InvalidArgumentError("--weights: expected 'checkpoint' or 'random', got '" +
                                args.weights + "'");
  }
  if (args.model.empty()) {
    if (args.weights == "checkpoint") {
      return InvalidArgumentError(
          "--weights checkpoint needs --model DIR (the demo model has random weights only)");
    }
    fs::path state;
    if (!args.state_dir.empty()) {
      state = args.state_dir;
    } else {
      TANDEM_ASSIGN_OR_RETURN(state, DefaultStateDir());
    }
    r.model_dir = state / "demo";
    TANDEM_RETURN_IF_ERROR(model::WriteDemoModel(r.model_dir).WithContext("demo model"));
    r.model_name = kDemoModelName;
    r.random_weights = true;
  } else {
    if (args.model.starts_with("builtin:")) {
      return InvalidArgumentError(
          "--model: serve needs a model directory (its tokenizer and "
          "chat template); leave --model out for the demo model");
    }
    std::error_code ec;
    if (!fs::is_directory(args.model, ec)) {
      return NotFoundError("--model: " + args.model + " is not a directory");
    }
    r.model_dir = fs::absolute(args.model, ec);
    fs::path name = r.model_dir;
    if (!name.has_filename()) name = name.parent_path();
    r.model_name = name.filename().string();
    r.random_weights = args.weights == "random";
  }
  if (!args.served_model_name.empty()) r.model_name = args.served_model_name;
  return r;
}

Status ValidateArgs(const ServeArgs& args) {
  if (args.workers < 1 || args.workers > 256) {
    return InvalidArgumentError("--workers: expected 1..256, got " + std::to_string(args.workers));
  }
  if (args.port < 0 || args.port > 65535) {
    return InvalidArgumentError("--port: expected 0..65535, got " + std::to_string(args.port));
  }
  if (args.grpc_port < -1 || args.grpc_port > 65535) {
    return InvalidArgumentError("--grpc-port: expected 0..65535, got " +
                                std::to_string(args.grpc_port));
  }
  if (args.startup_timeout_s <= 0 || args.drain_timeout_s <= 0) {
    return InvalidArgumentError("--startup-timeout and --drain-timeout must be positive");
  }
  return OkStatus();
}

// Runs the cluster until a stop signal (exit 0 when every child stopped cleanly) or a child's
// death (exit 1). Start-up errors are returned as a status.
StatusOr<int> Serve(const ServeArgs& args, const BlockedSignals& signals) {
  TANDEM_RETURN_IF_ERROR(ValidateArgs(args));
  TANDEM_ASSIGN_OR_RETURN(fs::path bin_dir, BinaryDirectory());
  TANDEM_ASSIGN_OR_RETURN(fs::path worker_bin, FindDaemon(bin_dir, kWorkerBinary));
  TANDEM_ASSIGN_OR_RETURN(fs::path frontend_bin, FindDaemon(bin_dir, kFrontendBinary));
  TANDEM_ASSIGN_OR_RETURN(Resolved model, ResolveModel(args));
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<TempDirectory> run_dir, TempDirectory::Create());
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(args.startup_timeout_s));
  const auto drain = std::chrono::duration<double>(args.drain_timeout_s);

  Cluster cluster;
  // Stops whatever started when start-up fails or is interrupted.
  auto abort_startup = [&](StatusOr<WaitEnd> end) -> StatusOr<int> {
    if (end.ok()) {
      spdlog::info("interrupted during start-up, stopping");
      return cluster.Stop(signals, drain) ? 0 : 1;
    }
    cluster.Stop(signals, drain);
    return end.status();
  };

  spdlog::info("starting workers count={} model={} dir={} weights={}", args.workers,
               model.model_name, model.model_dir.string(),
               model.random_weights ? "random" : "checkpoint");
  for (int i = 0; i < args.workers; ++i) {
    std::vector<std::string> argv = {
        worker_bin.string(),
        "--model",
        model.model_dir.string(),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--port-file",
        (run_dir->path() / ("worker-" + std::to_string(i) + ".json")).string(),
        "--metrics-port",
        "0",
        "--seed",
        std::to_string(args.seed),
        "--log-level",
        args.log_level};
    if (model.random_weights) argv.insert(argv.end(), {"--weights", "random"});
    if (args.num_blocks > 0)
      argv.insert(argv.end(), {"--num-blocks", std::to_string(args.num_blocks)});
    StatusOr<std::unique_ptr<Child>> child = Child::Start(
        std::string(kWorkerBinary) + " " + std::to_string(i), argv, signals.previous());
    if (!child.ok()) return abort_startup(child.status());
    cluster.workers.push_back(std::move(child).value());
  }

  std::string worker_list;
  nlohmann::json worker_ports = nlohmann::json::array();
  for (int i = 0; i < args.workers; ++i) {
    const std::string who = cluster.workers[i]->name();
    nlohmann::json ports;
    StatusOr<WaitEnd> end =
        WaitForPortFile(run_dir->path() / ("worker-" + std::to_string(i) + ".json"), who, cluster,
                        signals, deadline, &ports);
    if (!end.ok() || *end == WaitEnd::kInterrupted) return abort_startup(end);
    StatusOr<int> grpc_port = PortField(ports, "grpc_port", who);
    if (!grpc_port.ok()) return abort_startup(grpc_port.status());
    worker_list += (i ? "," : "") + std::string("127.0.0.1:") + std::to_string(*grpc_port);
    worker_ports.push_back(ports);
  }

  const fs::path frontend_port_file = run_dir->path() / "frontend.json";
  std::vector<std::string> argv = {frontend_bin.string(),
                                   "--model",
                                   model.model_dir.string(),
                                   "--workers",
                                   worker_list,
                                   "--host",
                                   args.host,
                                   "--port",
                                   std::to_string(args.port),
                                   "--port-file",
                                   frontend_port_file.string(),
                                   "--served-model-name",
                                   model.model_name,
                                   "--log-level",
                                   args.log_level};
  const int grpc_port = args.grpc_port >= 0 ? args.grpc_port : args.port == 0 ? 0 : 8001;
  argv.insert(argv.end(), {"--grpc-port", std::to_string(grpc_port)});
  if (!args.api_key.empty()) argv.insert(argv.end(), {"--api-key", args.api_key});
  if (!args.router_mode.empty()) argv.insert(argv.end(), {"--router-mode", args.router_mode});
  spdlog::info("starting frontend workers={} host={} port={}", worker_list, args.host, args.port);
  StatusOr<std::unique_ptr<Child>> frontend =
      Child::Start(kFrontendBinary, argv, signals.previous());
  if (!frontend.ok()) return abort_startup(frontend.status());
  cluster.frontend = std::move(frontend).value();

  nlohmann::json frontend_ports;
  StatusOr<WaitEnd> end = WaitForPortFile(frontend_port_file, kFrontendBinary, cluster, signals,
                                          deadline, &frontend_ports);
  if (!end.ok() || *end == WaitEnd::kInterrupted) return abort_startup(end);
  StatusOr<int> http_port = PortField(frontend_ports, "http_port", kFrontendBinary);
  if (!http_port.ok()) return abort_startup(http_port.status());
  const std::string connect_host = ConnectHost(args.host);
  end = WaitForHealth(connect_host, *http_port, args.api_key, cluster, signals, deadline);
  if (!end.ok() || *end == WaitEnd::kInterrupted) return abort_startup(end);

  if (!args.port_file.empty()) {
    nlohmann::json ports = {{"http_port", *http_port},
                            {"model", model.model_name},
                            {"model_dir", model.model_dir.string()},
                            {"pid", static_cast<int>(::getpid())},
                            {"workers", worker_ports}};
    if (frontend_ports.contains("grpc_port")) ports["grpc_port"] = frontend_ports["grpc_port"];
    Status written = WritePortFile(args.port_file, ports.dump() + "\n");
    if (!written.ok()) return abort_startup(written.WithContext("--port-file"));
  }
  std::printf("tandem serve ready: http://%s:%d/v1 (model %s, %d worker%s)\n",
              UrlHost(connect_host).c_str(), *http_port, model.model_name.c_str(), args.workers,
              args.workers == 1 ? "" : "s");
  std::fflush(stdout);

  while (true) {
    const int sig = signals.Wait(std::chrono::milliseconds(500));
    if (IsStopSignal(sig)) {
      spdlog::info("stopping signal={}", strsignal(sig));
      const bool clean = cluster.Stop(signals, drain);
      spdlog::info("stopped clean={}", clean);
      return clean ? 0 : 1;
    }
    if (Child* dead = cluster.FindExited(); dead != nullptr) {
      spdlog::error("child exited unexpectedly name={} pid={} status={}; stopping the others",
                    dead->name(), dead->pid(), dead->DescribeExit());
      cluster.Stop(signals, drain);
      return 1;
    }
  }
}

}  // namespace

std::function<int()> AddServeCommand(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* serve = app.add_subcommand(
      "serve", "Serve a model with the OpenAI API: a frontend and N workers on this machine");
  serve->add_option("--model", args->model,
                    "Hugging Face model directory (default: a small demo model with random "
                    "weights)");
  serve->add_option("--workers", args->workers, "Worker daemons to start (default 1)");
  serve->add_option("--host", args->host, "Address the HTTP API binds (default 127.0.0.1)");
  serve->add_option("--port", args->port, "HTTP port (default 8000; 0 picks a free one)");
  serve->add_option("--grpc-port", args->grpc_port,
                    "gRPC Inference port (default 8001; 0 picks a free one, the default with "
                    "--port 0)");
  serve->add_option("--port-file", args->port_file,
                    "Once ready, write {\"http_port\", ...} as JSON to this file");
  serve->add_option("--api-key", args->api_key, "Require this Bearer token on the HTTP API");
  serve->add_option("--served-model-name", args->served_model_name,
                    "Model name in the API (default: the directory's name; demo for the demo)");
  serve->add_option("--seed", args->seed, "Seed of random weights (default 0)");
  serve->add_option("--weights", args->weights,
                    "checkpoint (default with --model) or random (the demo's only choice)");
  serve->add_option("--state-dir", args->state_dir,
                    "Where serve keeps its files, e.g. the demo model in STATE/demo (default "
                    "$XDG_CACHE_HOME/tandem or ~/.cache/tandem)");
  serve->add_option("--router-mode", args->router_mode,
                    "Worker selection: round-robin or least-loaded (frontend's default)");
  serve->add_option("--num-blocks", args->num_blocks,
                    "KV blocks per worker (default: the worker's)");
  serve->add_option("--startup-timeout", args->startup_timeout_s,
                    "Seconds the daemons have to become ready (default 120)");
  serve->add_option("--drain-timeout", args->drain_timeout_s,
                    "Seconds each daemon has to drain on stop before it is killed (default 60)");
  serve->add_option("--log-level", args->log_level,
                    "trace|debug|info (default)|warn|error|off, for serve and its daemons");
  return [args]() {
    if (Status s = InitLogging(args->log_level); !s.ok()) {
      std::fprintf(stderr, "tandem serve: error: %s\n", s.message().c_str());
      return 2;
    }
    BlockedSignals signals;
    StatusOr<int> code = Serve(*args, signals);
    if (!code.ok()) {
      std::fprintf(stderr, "tandem serve: error: %s\n", code.status().message().c_str());
      return 1;
    }
    return *code;
  };
}

}  // namespace tandem::cli
