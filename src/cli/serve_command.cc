#include "cli/serve_command.h"

#include <unistd.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "cli/child_process.h"
#include "cli/supervisor.h"
#include "common/api_key.h"
#include "common/file_util.h"
#include "common/lifecycle.h"
#include "common/logging.h"
#include "common/parse.h"
#include "common/status_macros.h"
#include "engine/engine_factory.h"
#include "engine/llm_engine.h"
#include "model/demo_model.h"
#include "router/router.h"

namespace tandem::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kWorkerBinary[] = "tandem-decode-worker";
constexpr char kPrefillWorkerBinary[] = "tandem-prefill-worker";
constexpr char kFrontendBinary[] = "tandem-frontend";
constexpr char kDemoModelName[] = "demo";

// Flags. Those the daemons also have carry the same names and defaults, and pass through.
struct ServeArgs {
  // Model and cluster.
  std::string model;  // Empty: the demo model.
  std::string served_model_name;
  std::string weights;  // Empty: checkpoint for --model, random for the demo.
  uint64_t seed = 0;
  int workers = 1;          // Aggregated workers; with prefill workers, decode workers.
  int prefill_workers = 0;  // Disaggregated serving: tandem-prefill-worker processes' workers.
  int replicas = 0;  // Workers per worker process; 0: 1, or 16 for the mock backend.
  // Disaggregation: how KV moves between workers, and when a prompt is prefilled remotely.
  std::string transfer = "auto";
  double mock_transfer_gbps = 50;
  int64_t local_prefill_tokens = 512;  // tandem-frontend's defaults
  int64_t max_prefill_queue_tokens = 0;
  std::string state_dir;
  // Workers (tandem-decode-worker).
  std::string backend = engine::BackendOptions().backend;
  std::string mock_profile;
  double mock_speedup = engine::BackendOptions().mock_speedup;
  int block_size = engine::BackendOptions().block_size;
  int num_blocks = 0;
  std::string kv_cache_size = "1GiB";
  int max_num_seqs = engine::EngineOptions().max_num_seqs;
  int max_num_batched_tokens = engine::EngineOptions().max_num_batched_tokens;
  bool no_prefix_caching = false;
  int host_cache_blocks = 0;
  std::string disk_cache_path;
  int disk_cache_blocks = 0;
  int disk_cache_admit_after_reuses = engine::EngineOptions().disk_cache_admit_after_reuses;
  // Frontend (tandem-frontend).
  std::string host = "127.0.0.1";
  int port = 8000;
  int grpc_port = -1;  // -1: 8001, or ephemeral when --port is 0.
  std::string api_key;
  std::string api_key_file;
  std::string router_mode = "kv";
  router::RouterOptions router;  // Weights, temperature, seed (the mode comes from router_mode).
  std::string max_body_size = "1MiB";
  int max_connections = 0;
  int keep_alive_timeout_s = 30;
  int header_timeout_s = 10;
  int body_timeout_s = 60;
  double worker_stall_timeout_s = 3;
  double request_progress_timeout_s = 120;
  // serve itself, and every daemon.
  std::string port_file;
  double startup_timeout_s = 120;
  double drain_timeout_s = 30;
  int max_restarts = 5;
  std::string log_level = "info";
  std::string log_format = "text";
};

// Extra time serve gives a daemon past its own drain deadline: the frontend ends the streams it
// cut (error event, [DONE]) and flushes them within this.
constexpr double kStopGraceS = 10;

// ---- Start-up waits ----

// Why a start-up wait ended early.
enum class WaitEnd { kReady, kInterrupted };

// Checks the daemons and the signals once; called between attempts of every start-up wait.
// Fails when a daemon has died; reports an interruption by SIGINT/SIGTERM.
StatusOr<std::optional<WaitEnd>> CheckStartup(Supervisor& daemons, const BlockedSignals& signals,
                                              std::chrono::milliseconds pause) {
  if (const Child* dead = daemons.FindExited(); dead != nullptr) {
    return UnavailableError(dead->name() + " exited during start-up (" + dead->DescribeExit() +
                            "); its log is above");
  }
  const int sig = signals.Wait(pause);
  if (IsStopSignal(sig)) return std::optional<WaitEnd>(WaitEnd::kInterrupted);
  return std::optional<WaitEnd>();
}

// Waits for a daemon's port file (written atomically once it has bound its ports).
StatusOr<WaitEnd> WaitForPortFile(const fs::path& path, const std::string& who, Supervisor& daemons,
                                  const BlockedSignals& signals, Clock::time_point deadline,
                                  nlohmann::json* ports) {
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
                            CheckStartup(daemons, signals, std::chrono::milliseconds(50)));
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

StatusOr<WaitEnd> WaitForHealth(const std::string& host, int port, Supervisor& daemons,
                                const BlockedSignals& signals, Clock::time_point deadline) {
  Status last = UnavailableError("not asked yet");
  while (true) {
    StatusOr<int> code = HttpGetStatus(host, port, "/health");
    if (code.ok() && *code == 200) return WaitEnd::kReady;
    last = code.ok() ? UnavailableError("GET /health answered " + std::to_string(*code))
                     : code.status();
    if (Clock::now() >= deadline) {
      return DeadlineExceededError("the frontend did not become healthy in time: " +
                                   last.message());
    }
    TANDEM_ASSIGN_OR_RETURN(std::optional<WaitEnd> end,
                            CheckStartup(daemons, signals, std::chrono::milliseconds(100)));
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

// The host clients connect to: a wildcard address is reached through loopback.
std::string ConnectHost(const std::string& host) {
  if (host == "0.0.0.0" || host.empty()) return "127.0.0.1";
  if (host == "::" || host == "[::]") return "::1";
  return host;
}

std::string UrlHost(const std::string& host) {
  return host.find(':') != std::string::npos && !host.starts_with('[') ? "[" + host + "]" : host;
}

// ---- Validation, before anything starts ----

struct Resolved {
  fs::path model_dir;
  std::string model_name;
  bool random_weights = false;
  std::optional<std::string> api_key;
};

Status ValidateArgs(const ServeArgs& args) {
  if (args.workers < 1 || args.workers > 1024) {
    return InvalidArgumentError("--workers: expected 1..1024, got " + std::to_string(args.workers));
  }
  if (args.prefill_workers < 0 || args.prefill_workers > 1024) {
    return InvalidArgumentError("--prefill-workers: expected 0..1024, got " +
                                std::to_string(args.prefill_workers));
  }
  if (args.replicas < 0 || args.replicas > 1024) {
    return InvalidArgumentError("--replicas: expected 0..1024, got " +
                                std::to_string(args.replicas));
  }
  if (!(args.mock_speedup > 0)) return InvalidArgumentError("--mock-speedup must be positive");
  if ((!args.mock_profile.empty() || args.mock_speedup != 1.0) && args.backend != "mock") {
    return InvalidArgumentError("--mock-profile and --mock-speedup need --backend mock");
  }
  if (args.port < 0 || args.port > 65535) {
    return InvalidArgumentError("--port: expected 0..65535, got " + std::to_string(args.port));
  }
  if (args.grpc_port < -1 || args.grpc_port > 65535) {
    return InvalidArgumentError("--grpc-port: expected 0..65535, got " +
                                std::to_string(args.grpc_port));
  }
  if (args.startup_timeout_s <= 0) {
    return InvalidArgumentError("--startup-timeout must be positive");
  }
  if (args.drain_timeout_s < 0) return InvalidArgumentError("--drain-timeout must be >= 0");
  if (args.max_restarts < 0) return InvalidArgumentError("--max-restarts must be >= 0");
  if (args.weights != "" && args.weights != "checkpoint" && args.weights != "random") {
    return InvalidArgumentError("--weights: expected 'checkpoint' or 'random', got '" +
                                args.weights + "'");
  }
  // What the daemons would refuse at start, refused here before anything runs.
  TANDEM_RETURN_IF_ERROR(
      router::ParseRouterMode(args.router_mode).status().WithContext("--router-mode"));
  TANDEM_RETURN_IF_ERROR(args.router.Validate());
  const std::vector<std::string> backends = engine::AvailableBackends();
  if (std::find(backends.begin(), backends.end(), args.backend) == backends.end()) {
    std::string names;
    for (const std::string& b : backends) names += (names.empty() ? "" : ", ") + b;
    return InvalidArgumentError("--backend: unknown backend '" + args.backend +
                                "' (built: " + names + ")");
  }
  TANDEM_RETURN_IF_ERROR(ParseByteSize(args.kv_cache_size, "--kv-cache-size").status());
  TANDEM_RETURN_IF_ERROR(ParseByteSize(args.max_body_size, "--max-body-size").status());
  if (args.disk_cache_blocks > 0 && args.disk_cache_path.empty()) {
    return InvalidArgumentError("--disk-cache-blocks needs --disk-cache-path");
  }
  return OkStatus();
}

StatusOr<Resolved> Resolve(const ServeArgs& args) {
  Resolved r;
  TANDEM_ASSIGN_OR_RETURN(r.api_key, ResolveApiKey(args.api_key, args.api_key_file));
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

std::string Number(double x) { return fmt::format("{:g}", x); }

// ---- The daemons' command lines ----

// Ports a daemon bound at its first start, reused by its restarts (0: not known yet).
struct Ports {
  int grpc = 0;
  int metrics = 0;
  int http = 0;
};

// Flags a daemon is started with, in order: name then value.
using Flags = std::vector<std::pair<std::string, std::string>>;

std::vector<std::string> Argv(const fs::path& binary, const Flags& flags) {
  std::vector<std::string> argv = {binary.string()};
  for (const auto& [name, value] : flags) {
    argv.push_back(name);
    argv.push_back(value);
  }
  return argv;
}

// Workers per worker process, for `workers` workers of one role.
int ReplicasPerProcess(const ServeArgs& args, int workers) {
  const int per = args.replicas > 0 ? args.replicas : args.backend == "mock" ? 16 : 1;
  return std::min(per, workers);
}

// A worker process: `replicas` workers of one role, with the ports they bound at the first start
// (empty until then).
struct WorkerProcess {
  bool prefill = false;  // tandem-prefill-worker (else tandem-decode-worker).
  int index = 0;         // Among the processes of its role.
  int replicas = 1;
  std::vector<Ports> ports;

  std::string name() const {
    return (prefill ? "prefill-worker-" : "worker-") + std::to_string(index);
  }
};

std::string PortList(const WorkerProcess& p, int Ports::*field) {
  if (p.ports.empty()) return "0";
  std::string list;
  for (const Ports& ports : p.ports)
    list += (list.empty() ? "" : ",") + std::to_string(ports.*field);
  return list;
}

std::vector<std::string> WorkerArgv(const ServeArgs& args, const Resolved& model,
                                    const fs::path& binary, const WorkerProcess& proc,
                                    const fs::path& port_file) {
  Flags flags = {
      {"--model", model.model_dir.string()},
      {"--host", "127.0.0.1"},
      {"--replicas", std::to_string(proc.replicas)},
      {"--port", PortList(proc, &Ports::grpc)},
      {"--metrics-port", PortList(proc, &Ports::metrics)},
      {"--seed", std::to_string(args.seed)},
      {"--weights", model.random_weights ? "random" : "checkpoint"},
      {"--backend", args.backend},
      {"--block-size", std::to_string(args.block_size)},
      {"--num-blocks", std::to_string(args.num_blocks)},
      {"--kv-cache-size", args.kv_cache_size},
      {"--max-num-seqs", std::to_string(args.max_num_seqs)},
      {"--max-num-batched-tokens", std::to_string(args.max_num_batched_tokens)},
      {"--host-cache-blocks", std::to_string(args.host_cache_blocks)},
      {"--disk-cache-blocks", std::to_string(args.disk_cache_blocks)},
      {"--disk-cache-admit-after-reuses", std::to_string(args.disk_cache_admit_after_reuses)},
      {"--drain-timeout", Number(args.drain_timeout_s)},
      {"--log-level", args.log_level},
      {"--log-format", args.log_format}};
  if (args.prefill_workers > 0) {
    flags.emplace_back("--role", proc.prefill ? "prefill" : "decode");
    flags.emplace_back("--transfer", args.transfer);
  }
  if (args.backend == "mock") {
    flags.emplace_back("--mock-speedup", Number(args.mock_speedup));
    flags.emplace_back("--mock-transfer-gbps", Number(args.mock_transfer_gbps));
    if (!args.mock_profile.empty()) {
      flags.emplace_back("--mock-profile", fs::absolute(args.mock_profile).string());
    }
  }
  if (!args.disk_cache_path.empty()) {
    // One file per worker process (a process of several replicas adds ".r" for each).
    const int same_role = proc.prefill ? args.prefill_workers : args.workers;
    flags.emplace_back("--disk-cache-path",
                       (proc.prefill ? args.disk_cache_path + ".prefill" : args.disk_cache_path) +
                           (same_role == 1 ? "" : "." + std::to_string(proc.index)));
  }
  if (proc.ports.empty()) flags.emplace_back("--port-file", port_file.string());
  std::vector<std::string> argv = Argv(binary, flags);
  if (args.no_prefix_caching) argv.push_back("--no-prefix-caching");
  return argv;
}

std::vector<std::string> FrontendArgv(const ServeArgs& args, const Resolved& model,
                                      const fs::path& binary, const std::string& worker_list,
                                      const Ports& ports, const fs::path& port_file) {
  const int grpc_port = ports.grpc > 0        ? ports.grpc
                        : args.grpc_port >= 0 ? args.grpc_port
                        : args.port == 0      ? 0
                                              : 8001;
  const int http_port = ports.http > 0 ? ports.http : args.port;
  Flags flags = {{"--model", model.model_dir.string()},
                 {"--workers", worker_list},
                 {"--host", args.host},
                 {"--port", std::to_string(http_port)},
                 {"--grpc-port", std::to_string(grpc_port)},
                 {"--served-model-name", model.model_name},
                 {"--router-mode", args.router_mode},
                 {"--router-overlap-weight", Number(args.router.overlap_weight)},
                 {"--router-host-weight", Number(args.router.host_weight)},
                 {"--router-disk-weight", Number(args.router.disk_weight)},
                 {"--router-temperature", Number(args.router.temperature)},
                 {"--router-seed", std::to_string(args.router.seed)},
                 {"--max-body-size", args.max_body_size},
                 {"--max-connections", std::to_string(args.max_connections)},
                 {"--keep-alive-timeout", std::to_string(args.keep_alive_timeout_s)},
                 {"--header-timeout", std::to_string(args.header_timeout_s)},
                 {"--body-timeout", std::to_string(args.body_timeout_s)},
                 {"--worker-stall-timeout", Number(args.worker_stall_timeout_s)},
                 {"--request-progress-timeout", Number(args.request_progress_timeout_s)},
                 {"--local-prefill-tokens", std::to_string(args.local_prefill_tokens)},
                 {"--max-prefill-queue-tokens", std::to_string(args.max_prefill_queue_tokens)},
                 {"--drain-timeout", Number(args.drain_timeout_s)},
                 {"--log-level", args.log_level},
                 {"--log-format", args.log_format}};
  if (ports.http == 0) flags.emplace_back("--port-file", port_file.string());
  return Argv(binary, flags);
}

// ---- serve ----

// Runs the cluster until a stop signal (exit 0 when every daemon stopped cleanly) or until it
// cannot serve any more (exit 1). Start-up errors are returned as a status.
StatusOr<int> Serve(const ServeArgs& args, const BlockedSignals& signals) {
  TANDEM_RETURN_IF_ERROR(ValidateArgs(args));
  TANDEM_ASSIGN_OR_RETURN(fs::path bin_dir, BinaryDirectory());
  TANDEM_ASSIGN_OR_RETURN(fs::path worker_bin, FindDaemon(bin_dir, kWorkerBinary));
  fs::path prefill_bin;
  if (args.prefill_workers > 0) {
    TANDEM_ASSIGN_OR_RETURN(prefill_bin, FindDaemon(bin_dir, kPrefillWorkerBinary));
  }
  TANDEM_ASSIGN_OR_RETURN(fs::path frontend_bin, FindDaemon(bin_dir, kFrontendBinary));
  TANDEM_ASSIGN_OR_RETURN(Resolved model, Resolve(args));
  if (const int stale = TempDirectory::RemoveStale(); stale > 0) {
    spdlog::info("removed temporary directories of serve processes gone count={}", stale);
  }
  // Port files of the first start; removed once everything is up (restarts reuse known ports).
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<TempDirectory> run_dir, TempDirectory::Create());
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(args.startup_timeout_s));
  const auto stop_timeout = std::chrono::duration<double>(args.drain_timeout_s + kStopGraceS);

  RestartPolicy policy;
  policy.max_restarts = args.max_restarts;
  Supervisor daemons(policy, signals);
  // Stops whatever started when start-up fails or is interrupted.
  auto abort_startup = [&](StatusOr<WaitEnd> end) -> StatusOr<int> {
    if (end.ok()) {
      spdlog::info("interrupted during start-up, stopping");
      return daemons.Stop(stop_timeout) ? 0 : 1;
    }
    daemons.Stop(stop_timeout);
    return end.status();
  };

  // Shared with the daemons' argv builders, which outlive this scope's locals otherwise. The
  // decode (or aggregated) workers' processes first, then the prefill workers'.
  auto processes = std::make_shared<std::vector<WorkerProcess>>();
  for (const bool prefill : {false, true}) {
    const int workers = prefill ? args.prefill_workers : args.workers;
    if (workers == 0) continue;
    const int per_process = ReplicasPerProcess(args, workers);
    for (int k = 0; k * per_process < workers; ++k) {
      processes->push_back({.prefill = prefill,
                            .index = k,
                            .replicas = std::min(per_process, workers - k * per_process)});
    }
  }
  const int num_processes = static_cast<int>(processes->size());
  spdlog::info(
      "starting workers count={} prefill_workers={} processes={} model={} dir={} weights={} "
      "backend={}",
      args.workers, args.prefill_workers, num_processes, Quoted(model.model_name),
      Quoted(model.model_dir.string()), model.random_weights ? "random" : "checkpoint",
      args.backend);
  const fs::path run_path = run_dir->path();
  for (int k = 0; k < num_processes; ++k) {
    DaemonSpec spec;
    spec.name = (*processes)[k].name();
    spec.role = DaemonSpec::Role::kWorker;
    const fs::path binary = (*processes)[k].prefill ? prefill_bin : worker_bin;
    spec.argv = [&args, model, binary, k, processes, run_path] {
      const WorkerProcess& proc = (*processes)[k];
      return WorkerArgv(args, model, binary, proc, run_path / (proc.name() + ".json"));
    };
    if (Status s = daemons.Add(std::move(spec)); !s.ok()) return abort_startup(s);
  }

  std::string worker_list;
  nlohmann::json worker_port_json = nlohmann::json::array();
  for (int k = 0; k < num_processes; ++k) {
    const std::string who = (*processes)[k].name();
    nlohmann::json ports;
    StatusOr<WaitEnd> end =
        WaitForPortFile(run_path / (who + ".json"), who, daemons, signals, deadline, &ports);
    if (!end.ok() || *end == WaitEnd::kInterrupted) return abort_startup(end);
    WorkerProcess& proc = (*processes)[k];
    const auto replicas = ports.find("replicas");
    if (replicas == ports.end() || !replicas->is_array() ||
        static_cast<int>(replicas->size()) != proc.replicas) {
      return abort_startup(InternalError(who + "'s port file does not list its " +
                                         std::to_string(proc.replicas) +
                                         " replicas: " + ports.dump()));
    }
    std::vector<Ports> bound;
    for (const nlohmann::json& replica : *replicas) {
      StatusOr<int> grpc_port = PortField(replica, "grpc_port", who);
      if (!grpc_port.ok()) return abort_startup(grpc_port.status());
      StatusOr<int> metrics_port = PortField(replica, "metrics_port", who);
      if (!metrics_port.ok()) return abort_startup(metrics_port.status());
      bound.push_back(Ports{.grpc = *grpc_port, .metrics = *metrics_port});
      worker_list +=
          (worker_list.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(*grpc_port);
      nlohmann::json listed = replica;
      listed["role"] = proc.prefill               ? "prefill"
                       : args.prefill_workers > 0 ? "decode"
                                                  : "aggregated";
      worker_port_json.push_back(std::move(listed));
    }
    proc.ports = std::move(bound);
  }

  auto frontend_ports = std::make_shared<Ports>();
  const fs::path frontend_port_file = run_path / "frontend.json";
  DaemonSpec frontend;
  frontend.name = "frontend";
  frontend.role = DaemonSpec::Role::kFrontend;
  frontend.argv = [&args, model, frontend_bin, worker_list, frontend_ports, frontend_port_file] {
    return FrontendArgv(args, model, frontend_bin, worker_list, *frontend_ports,
                        frontend_port_file);
  };
  if (model.api_key) frontend.env.emplace_back(kApiKeyEnv, *model.api_key);
  spdlog::info("starting frontend workers={} host={} port={}",
               args.workers <= 8 ? worker_list : std::to_string(args.workers), args.host,
               args.port);
  if (Status s = daemons.Add(std::move(frontend)); !s.ok()) return abort_startup(s);

  nlohmann::json frontend_json;
  StatusOr<WaitEnd> end =
      WaitForPortFile(frontend_port_file, "frontend", daemons, signals, deadline, &frontend_json);
  if (!end.ok() || *end == WaitEnd::kInterrupted) return abort_startup(end);
  StatusOr<int> http_port = PortField(frontend_json, "http_port", "frontend");
  if (!http_port.ok()) return abort_startup(http_port.status());
  StatusOr<int> grpc_port = PortField(frontend_json, "grpc_port", "frontend");
  if (!grpc_port.ok()) return abort_startup(grpc_port.status());
  *frontend_ports = Ports{.grpc = *grpc_port, .http = *http_port};
  const std::string connect_host = ConnectHost(args.host);
  end = WaitForHealth(connect_host, *http_port, daemons, signals, deadline);
  if (!end.ok() || *end == WaitEnd::kInterrupted) return abort_startup(end);
  run_dir.reset();  // Nothing reads the port files any more.

  if (!args.port_file.empty()) {
    nlohmann::json ports = {{"http_port", *http_port},
                            {"grpc_port", *grpc_port},
                            {"model", model.model_name},
                            {"model_dir", model.model_dir.string()},
                            {"pid", static_cast<int>(::getpid())},
                            {"workers", worker_port_json}};
    Status written = WriteFileAtomically(args.port_file, ports.dump() + "\n");
    if (!written.ok()) return abort_startup(written.WithContext("--port-file"));
  }
  if (args.prefill_workers > 0) {
    std::printf(
        "tandem serve ready: http://%s:%d/v1 (model %s, %d prefill and %d decode "
        "workers)\n",
        UrlHost(connect_host).c_str(), *http_port, model.model_name.c_str(), args.prefill_workers,
        args.workers);
  } else {
    std::printf("tandem serve ready: http://%s:%d/v1 (model %s, %d worker%s)\n",
                UrlHost(connect_host).c_str(), *http_port, model.model_name.c_str(), args.workers,
                args.workers == 1 ? "" : "s");
  }
  std::fflush(stdout);

  while (true) {
    const int sig = signals.Wait(std::chrono::milliseconds(200));
    if (IsStopSignal(sig)) {
      spdlog::info("stopping signal={} drain_timeout_s={}", Quoted(strsignal(sig)),
                   Number(args.drain_timeout_s));
      const bool clean = daemons.Stop(stop_timeout);
      if (clean) {
        spdlog::info("stopped clean=true");
      } else {
        spdlog::error("stopped clean=false reason={}",
                      Quoted("a daemon failed to stop cleanly, or the frontend cut requests at "
                             "the drain deadline (see above)"));
      }
      return clean ? 0 : 1;
    }
    if (Status s = daemons.Tick(); !s.ok()) {
      spdlog::error("cannot serve any more, stopping error={}", Quoted(s.message()));
      daemons.Stop(stop_timeout);
      return 1;
    }
  }
}

}  // namespace

std::function<int()> AddServeCommand(CLI::App& app, int argc, char** argv) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* serve = app.add_subcommand(
      "serve", "Serve a model with the OpenAI API: a frontend and N workers on this machine");
  serve->option_defaults()->always_capture_default();
  ServeArgs& a = *args;
  // Model and cluster.
  serve
      ->add_option("--model", a.model,
                   "Hugging Face model directory (empty: a small demo model with random "
                   "weights)")
      ->group("Model");
  serve
      ->add_option("--served-model-name", a.served_model_name,
                   "Model name in the API (empty: the directory's name; demo for the demo)")
      ->group("Model");
  serve
      ->add_option("--weights", a.weights,
                   "checkpoint (empty: checkpoint with --model) or random (the demo's only "
                   "choice)")
      ->group("Model");
  serve->add_option("--seed", a.seed, "Seed of random weights")->group("Model");
  serve
      ->add_option("--state-dir", a.state_dir,
                   "Where serve keeps its files, e.g. the demo model in STATE/demo (empty: "
                   "$XDG_CACHE_HOME/tandem or ~/.cache/tandem)")
      ->group("Model");
  // Workers.
  const char* kWorkers = "Workers";
  serve
      ->add_option("--workers,--decode-workers", a.workers,
                   "Workers to start (with --prefill-workers: decode workers)")
      ->group(kWorkers);
  serve
      ->add_option("--prefill-workers", a.prefill_workers,
                   "Prefill workers (disaggregated serving: prompts are prefilled there and "
                   "their KV pulled by the decode workers; 0: aggregated workers)")
      ->group(kWorkers);
  serve
      ->add_option("--transfer", a.transfer,
                   "With prefill workers: how KV moves between workers (auto, ucx, inproc, "
                   "cuda_ipc, nccl); auto: cuda_ipc for cuda, ucx for cpu")
      ->group(kWorkers);
  serve
      ->add_option("--mock-transfer-gbps", a.mock_transfer_gbps,
                   "Mock backend: simulated KV transfer rate between workers, GB/s")
      ->group(kWorkers);
  serve
      ->add_option("--replicas", a.replicas,
                   "Workers per worker process, each with its own engine and ports (0: 1, or 16 "
                   "with --backend mock)")
      ->group(kWorkers);
  serve->add_option("--backend", a.backend, "Engine backend: cpu, cuda or mock")->group(kWorkers);
  serve
      ->add_option("--mock-profile", a.mock_profile,
                   "Mock backend: timing model JSON (empty: Llama-3.1-8B on an H200, "
                   "bench/results/mock_profile_llama-3.1-8b_h200.json)")
      ->group(kWorkers);
  serve
      ->add_option("--mock-speedup", a.mock_speedup,
                   "Mock backend: simulated time runs this many times faster than real time")
      ->group(kWorkers);
  serve->add_option("--block-size", a.block_size, "Tokens per KV block")->group(kWorkers);
  serve->add_option("--num-blocks", a.num_blocks, "KV blocks per worker (0: from --kv-cache-size)")
      ->group(kWorkers);
  serve->add_option("--kv-cache-size", a.kv_cache_size, "KV pool budget per worker")
      ->group(kWorkers);
  serve->add_option("--max-num-seqs", a.max_num_seqs, "Sequences per batch")->group(kWorkers);
  serve->add_option("--max-num-batched-tokens", a.max_num_batched_tokens, "Tokens per step")
      ->group(kWorkers);
  serve->add_flag("--no-prefix-caching", a.no_prefix_caching, "Do not reuse cached prompt blocks")
      ->group(kWorkers);
  serve
      ->add_option("--host-cache-blocks", a.host_cache_blocks,
                   "Host-memory KV tier (G2) per worker, in blocks (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->group(kWorkers);
  serve
      ->add_option("--disk-cache-path", a.disk_cache_path,
                   "Disk KV tier (G3) file; with several workers, worker i uses PATH.i")
      ->group(kWorkers);
  serve
      ->add_option("--disk-cache-blocks", a.disk_cache_blocks,
                   "Disk KV tier (G3) per worker, in blocks (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->group(kWorkers);
  serve
      ->add_option("--disk-cache-admit-after-reuses", a.disk_cache_admit_after_reuses,
                   "Write a block to disk once reused this often (0: every block)")
      ->check(CLI::NonNegativeNumber)
      ->group(kWorkers);
  // Frontend.
  const char* kFrontend = "Frontend";
  serve->add_option("--host", a.host, "Address the HTTP and gRPC APIs bind")->group(kFrontend);
  serve->add_option("--port", a.port, "HTTP port (0 picks a free one)")->group(kFrontend);
  serve
      ->add_option("--grpc-port", a.grpc_port,
                   "gRPC Inference port (-1: 8001, or a free one with --port 0)")
      ->group(kFrontend);
  serve
      ->add_option("--api-key", a.api_key,
                   "Require 'Authorization: Bearer KEY' on /v1 and gRPC (visible in ps: prefer "
                   "--api-key-file or $TANDEM_API_KEY)")
      ->group(kFrontend);
  serve->add_option("--api-key-file", a.api_key_file, "Read the API key from this file")
      ->group(kFrontend);
  serve
      ->add_option("--router-mode", a.router_mode,
                   "Worker selection: kv (KV overlap weighed against load), round-robin, random "
                   "or least-loaded")
      ->group(kFrontend);
  serve
      ->add_option("--router-overlap-weight", a.router.overlap_weight,
                   "Weight of prefill blocks against decode blocks in the kv router's cost")
      ->group(kFrontend);
  serve
      ->add_option("--router-host-weight", a.router.host_weight,
                   "A cached block on the host tier, as a fraction of a device hit")
      ->group(kFrontend);
  serve
      ->add_option("--router-disk-weight", a.router.disk_weight,
                   "A cached block on the disk tier, as a fraction of a device hit")
      ->group(kFrontend);
  serve
      ->add_option("--router-temperature", a.router.temperature,
                   "0: lowest cost wins; > 0: sample by softmax of -cost/T")
      ->group(kFrontend);
  serve->add_option("--router-seed", a.router.seed, "Seed of the router's draws (0: random)")
      ->group(kFrontend);
  serve->add_option("--max-body-size", a.max_body_size, "Largest request body; larger: 413")
      ->group(kFrontend);
  serve
      ->add_option("--max-connections", a.max_connections,
                   "Open HTTP connections at most, beyond: 503 (0: from the open-file limit)")
      ->group(kFrontend);
  serve
      ->add_option("--keep-alive-timeout", a.keep_alive_timeout_s,
                   "Seconds an idle keep-alive connection stays open")
      ->group(kFrontend);
  serve
      ->add_option("--header-timeout", a.header_timeout_s,
                   "Seconds a client has to send a request header")
      ->group(kFrontend);
  serve->add_option("--body-timeout", a.body_timeout_s, "Seconds a client has to send a body")
      ->group(kFrontend);
  serve
      ->add_option("--worker-stall-timeout", a.worker_stall_timeout_s,
                   "Seconds without a load report before a worker is taken out of routing and "
                   "its requests fail")
      ->group(kFrontend);
  serve
      ->add_option("--request-progress-timeout", a.request_progress_timeout_s,
                   "Seconds a request may wait for its worker's next message (0: forever)")
      ->group(kFrontend);
  serve
      ->add_option("--local-prefill-tokens", a.local_prefill_tokens,
                   "With prefill workers: a prompt whose part uncached on its decode worker is "
                   "shorter than this is prefilled there")
      ->group(kFrontend);
  serve
      ->add_option("--max-prefill-queue-tokens", a.max_prefill_queue_tokens,
                   "With prefill workers: prefill on the decode worker when the chosen prefill "
                   "worker has more prompt tokens queued than this (0: no limit)")
      ->group(kFrontend);
  // serve.
  const char* kServe = "Serve";
  serve
      ->add_option("--port-file", a.port_file,
                   "Once ready, write {\"http_port\", \"grpc_port\", ...} as JSON to this file")
      ->group(kServe);
  serve
      ->add_option("--startup-timeout", a.startup_timeout_s,
                   "Seconds the daemons have to become ready")
      ->group(kServe);
  serve
      ->add_option("--drain-timeout", a.drain_timeout_s,
                   "Seconds requests in flight get on stop; the rest end with an error")
      ->group(kServe);
  serve
      ->add_option("--max-restarts", a.max_restarts,
                   "Restarts in a row before a failing daemon is given up (0: none)")
      ->group(kServe);
  serve
      ->add_option("--log-level", a.log_level,
                   "trace|debug|info|warn|error|off, for serve and its daemons")
      ->group(kServe);
  serve->add_option("--log-format", a.log_format, "text | json, for serve and its daemons")
      ->group(kServe);
  return [args, argc, argv]() {
    HideArgValue(argc, argv, "--api-key");
    if (std::getenv("TANDEM_LOG_NAME") == nullptr) ::setenv("TANDEM_LOG_NAME", "serve", 1);
    if (Status s = InitLogging(args->log_level, args->log_format); !s.ok()) {
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
