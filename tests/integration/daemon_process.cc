#include "daemon_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "grpc/health/v1/health.grpc.pb.h"

extern char** environ;

namespace tandem::testing {

namespace fs = std::filesystem;

StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(const std::string& binary,
                                                              std::vector<std::string> args,
                                                              std::chrono::milliseconds timeout) {
  DaemonOptions options;
  options.timeout = timeout;
  return Start(binary, std::move(args), options);
}

StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(const std::string& binary,
                                                              std::vector<std::string> args,
                                                              const DaemonOptions& options) {
  const std::chrono::milliseconds timeout = options.timeout;
  static std::atomic<int> counter{0};
  const fs::path dir = fs::temp_directory_path() /
                       ("tandem_it_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path port_file = dir / "ports.json";
  const fs::path log_file = dir / "stderr.log";
  args.insert(args.begin(), binary);
  args.push_back("--port-file");
  args.push_back(port_file.string());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_file.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> env_entries;
  for (char** e = environ; *e != nullptr; ++e) env_entries.push_back(*e);
  for (const auto& [key, value] : options.env) env_entries.push_back(key + "=" + value);
  std::vector<char*> envp;
  for (std::string& e : env_entries) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  const int err = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return InternalError("posix_spawn " + binary + ": " + std::strerror(err));
  auto daemon = std::unique_ptr<DaemonProcess>(new DaemonProcess(pid, dir));

  // Written atomically (tmp + rename) by the daemon once both ports are bound.
  const bool have_ports = WaitFor([&] { return fs::exists(port_file) || daemon->Reap(); }, timeout);
  if (daemon->exit_code_) {
    return InternalError("daemon exited with " + std::to_string(*daemon->exit_code_) + ": " +
                         daemon->log());
  }
  if (!have_ports) return DeadlineExceededError("no port file: " + daemon->log());
  std::ifstream in(port_file);
  const nlohmann::json ports = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!ports.is_object() || !ports.contains("grpc_port") || !ports.contains("metrics_port")) {
    return InternalError("bad port file: " + ports.dump());
  }
  daemon->grpc_port_ = ports["grpc_port"].get<int>();
  daemon->metrics_port_ = ports["metrics_port"].get<int>();
  if (ports.contains("replicas") && ports["replicas"].is_array()) {
    for (const auto& r : ports["replicas"]) {
      daemon->replica_grpc_ports_.push_back(r.value("grpc_port", 0));
    }
  } else {
    daemon->replica_grpc_ports_ = {daemon->grpc_port_};
  }
  daemon->channel_ =
      grpc::CreateChannel(daemon->grpc_address(), grpc::InsecureChannelCredentials());
  if (!options.wait_serving) return daemon;

  // Watch streams the current status first, then every change: read until SERVING.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  auto stub = grpc::health::v1::Health::NewStub(daemon->channel_);
  grpc::health::v1::HealthCheckRequest request;
  auto reader = stub->Watch(&ctx, request);
  grpc::health::v1::HealthCheckResponse response;
  bool serving = false;
  while (!serving && reader->Read(&response)) {
    serving = response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  }
  ctx.TryCancel();
  reader->Finish().IgnoreError();
  if (!serving) return DeadlineExceededError("health never became SERVING: " + daemon->log());
  return daemon;
}

DaemonProcess::~DaemonProcess() {
  if (!Reap()) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

bool DaemonProcess::Reap() {
  if (exit_code_) return true;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return true;
}

std::string DaemonProcess::log() const {
  std::ifstream in(dir_ / "stderr.log");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void DaemonProcess::Signal(int sig) {
  if (!exit_code_) kill(pid_, sig);
}

std::optional<int> DaemonProcess::WaitExit(std::chrono::milliseconds timeout) {
  if (!WaitFor([&] { return Reap(); }, timeout)) return std::nullopt;
  return exit_code_;
}

std::string DaemonProcess::HealthStatus(const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&ctx, request, &response);
  if (!status.ok()) return status.error_message();
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

StatusOr<std::string> HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return InternalError("socket failed");
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return UnavailableError("cannot connect to port " + std::to_string(port));
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return InternalError("send failed");
  }
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || body == std::string::npos) {
    return InternalError("bad HTTP response: " + response.substr(0, 200));
  }
  if (response.find(" 200 ") == std::string::npos || response.find(" 200 ") > body) {
    return InternalError("HTTP error: " + response.substr(0, response.find("\r\n")));
  }
  return response.substr(body + 4);
}

bool WaitForWorkersUp(int port, size_t up, std::chrono::milliseconds timeout) {
  return WaitFor(
      [&] {
        auto body = HttpGet(port, "/health");
        if (!body.ok()) return false;
        const nlohmann::json health = nlohmann::json::parse(*body, nullptr, false);
        return health.is_object() &&
               health.value("workers_up", int64_t{-1}) == static_cast<int64_t>(up);
      },
      timeout);
}

}  // namespace tandem::testing
