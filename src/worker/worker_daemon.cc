#include "worker/worker_daemon.h"

#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "common/file_util.h"
#include "common/lifecycle.h"
#include "common/logging.h"
#include "common/parse.h"
#include "common/status_macros.h"
#include "engine/engine_factory.h"
#include "tandem/transfer.h"
#include "worker/replica_set.h"

namespace tandem::worker {

namespace {

struct Flags {
  std::string role;
  std::string transfer = "none";
  double mock_transfer_gbps = 50;
  double pull_timeout_s = 10;
  tandem::engine::ModelSpec model;
  std::string weights = "checkpoint";
  tandem::engine::BackendOptions backend;
  std::string kv_cache_size = "1GiB";
  tandem::engine::EngineOptions engine;
  bool no_prefix_caching = false;
  tandem::worker::WorkerServerOptions server;
  int replicas = 1;
  std::string ports = "0";
  std::string metrics_ports = "0";
  double drain_timeout_s = 30;
  std::string port_file;
  std::string log_level = "info";
  std::string log_format = "text";
};

std::string DefaultWorkerId() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + ":" + std::to_string(getpid());
}

// --transfer auto: CUDA IPC for a device pool (prefill and decode workers on one node), UCX for
// a host pool (cpu), none for the mock (it moves nothing: its pulls are simulated); across
// nodes, name ucx.
std::string AutoTransfer(const std::string& engine_backend) {
  const std::vector<std::string> built = transfer::AvailableBackends();
  const auto has = [&](const char* name) {
    return std::find(built.begin(), built.end(), name) != built.end();
  };
  if (engine_backend == "cuda" && has("cuda_ipc")) return "cuda_ipc";
  if (engine_backend == "mock") return "none";
  return has("ucx") ? "ucx" : "none";
}

tandem::Status Serve(Flags& f, const WorkerDaemonSpec& spec) {
  TANDEM_ASSIGN_OR_RETURN(auto signals, tandem::TerminationSignals::Install());  // Before threads.
  TANDEM_RETURN_IF_ERROR(tandem::InitLogging(f.log_level, f.log_format));
  TANDEM_ASSIGN_OR_RETURN(f.server.service.role, ParseWorkerRole(f.role, spec.roles));
  // One backend for the process; each replica registers its own pool with it.
  std::unique_ptr<transfer::Backend> transfer;
  if (f.transfer == "auto") f.transfer = AutoTransfer(f.backend.backend);
  if (f.transfer != "none") {
    auto created = transfer::CreateBackend(f.transfer);
    if (!created.ok()) return created.status().WithContext("--transfer");
    transfer = std::move(created).value();
    f.server.service.transfer = transfer.get();
  }
  if (f.weights != "checkpoint" && f.weights != "random") {
    return tandem::InvalidArgumentError("--weights: expected 'checkpoint' or 'random'");
  }
  f.model.random_weights = f.weights == "random";
  TANDEM_ASSIGN_OR_RETURN(f.backend.kv_cache_bytes,
                          tandem::ParseByteSize(f.kv_cache_size, "--kv-cache-size"));
  f.engine.enable_prefix_caching = !f.no_prefix_caching;
  f.backend.mock_seed = f.model.weights_seed;
  f.server.service.simulated_transfer_bytes_per_second = f.mock_transfer_gbps * 1e9;
  f.server.service.simulated_speedup = f.backend.mock_speedup;
  f.server.service.pull_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(f.pull_timeout_s * 1000));
  tandem::worker::ReplicaSetOptions set;
  set.replicas = f.replicas;
  TANDEM_ASSIGN_OR_RETURN(set.ports,
                          tandem::worker::ParseReplicaPorts(f.ports, f.replicas, "--port"));
  TANDEM_ASSIGN_OR_RETURN(set.metrics_ports, tandem::worker::ParseReplicaPorts(
                                                 f.metrics_ports, f.replicas, "--metrics-port"));
  f.server.service.model = f.model.model;
  if (f.server.service.worker_id.empty()) f.server.service.worker_id = DefaultWorkerId();
  set.server = f.server;
  const auto make_engine = [&f](int i) -> tandem::StatusOr<std::unique_ptr<tandem::Engine>> {
    tandem::engine::EngineOptions engine = f.engine;
    // One disk tier file per replica.
    if (f.replicas > 1 && !engine.disk_cache_path.empty()) {
      engine.disk_cache_path += "." + std::to_string(i);
    }
    TANDEM_ASSIGN_OR_RETURN(auto created, tandem::engine::CreateEngine(f.model, f.backend, engine));
    return std::unique_ptr<tandem::Engine>(std::move(created));
  };
  TANDEM_ASSIGN_OR_RETURN(auto replicas, tandem::worker::ReplicaSet::Create(set, make_engine));
  if (!f.port_file.empty()) {
    TANDEM_RETURN_IF_ERROR(tandem::WriteFileAtomically(f.port_file, replicas->PortsJson()));
  }
  const auto& first = replicas->replica(0);
  spdlog::info(
      "worker ready role={} grpc={}:{} metrics={}:{} replicas={} backend={} model={} worker_id={}",
      f.role, f.server.host, first.grpc_port(), f.server.host, first.metrics_port(), f.replicas,
      f.backend.backend, tandem::Quoted(f.model.model), tandem::Quoted(f.server.service.worker_id));
  tandem::NotifyReady("serving on port " + std::to_string(first.grpc_port()));
  signals->Wait();
  tandem::NotifyStopping();
  replicas->Drain(std::chrono::milliseconds(static_cast<int64_t>(f.drain_timeout_s * 1000)));
  return tandem::OkStatus();
}

}  // namespace

StatusOr<v1::WorkerRole> ParseWorkerRole(std::string_view name,
                                         const std::vector<std::string>& allowed) {
  const bool ok = std::find(allowed.begin(), allowed.end(), name) != allowed.end();
  std::string list;
  for (const std::string& r : allowed) list += (list.empty() ? "" : ", ") + r;
  if (!ok) {
    return InvalidArgumentError("--role: '" + std::string(name) + "' is not one of " + list);
  }
  if (name == "prefill") return v1::WORKER_ROLE_PREFILL;
  if (name == "decode") return v1::WORKER_ROLE_DECODE;
  return v1::WORKER_ROLE_AGGREGATED;
}

int RunWorkerDaemon(int argc, char** argv, const WorkerDaemonSpec& spec) {
  tandem::ReexecWithPassiveOpenMp(argv);
  Flags f;
  f.role = spec.roles.front();
  CLI::App app(spec.name + ": " + spec.description, spec.name);
  app.option_defaults()->always_capture_default();
  std::string roles;
  for (const std::string& r : spec.roles) roles += (roles.empty() ? "" : " | ") + r;
  app.add_option("--role", f.role, "What this worker does: " + roles);
  app.add_option("--transfer", f.transfer,
                 "Register the KV pool for peers' one-sided reads and pull through it: auto, "
                 "none, inproc or ucx (and cuda_ipc, nccl where built); auto: cuda_ipc for a "
                 "cuda pool, ucx for a cpu pool");
  app.add_option("--mock-transfer-gbps", f.mock_transfer_gbps,
                 "Mock backend: KV pulls take bytes / this rate (GB/s) of simulated time")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--pull-timeout,--pull-timeout-s", f.pull_timeout_s,
                 "Seconds a KV pull may take before the request is prefilled here")
      ->check(CLI::PositiveNumber);
  app.add_option("--model", f.model.model, "Checkpoint dir, builtin:demo or builtin:llama-100m");
  app.add_option("--weights", f.weights, "checkpoint | random");
  app.add_option("--seed", f.model.weights_seed, "Seed of random weights");
  app.add_option("--block-size", f.backend.block_size, "Tokens per KV block");
  app.add_option("--num-blocks", f.backend.num_blocks, "KV blocks (0: from --kv-cache-size)");
  app.add_option("--kv-cache-size", f.kv_cache_size, "KV pool budget");
  app.add_option("--max-num-seqs", f.engine.max_num_seqs, "Sequences per batch");
  app.add_option("--max-num-batched-tokens", f.engine.max_num_batched_tokens, "Tokens per step");
  app.add_flag("--no-prefix-caching", f.no_prefix_caching, "Do not reuse cached prompt blocks");
  app.add_option("--host-cache-blocks", f.engine.host_cache_blocks,
                 "Host-memory KV tier (G2), in blocks (0: off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--disk-cache-path", f.engine.disk_cache_path, "Disk KV tier (G3) file");
  app.add_option("--disk-cache-blocks", f.engine.disk_cache_blocks,
                 "Disk KV tier (G3), in blocks (0: off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--disk-cache-admit-after-reuses", f.engine.disk_cache_admit_after_reuses,
                 "Write a block to disk once reused this often (0: every block)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--kv-event-capacity", f.engine.kv_event_capacity,
                 "KV events kept for subscribers that fall behind (older ones: a snapshot)")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--host", f.server.host, "Address to bind (gRPC and metrics)");
  app.add_option("--backend", f.backend.backend, "Engine backend: cpu, cuda or mock");
  app.add_option("--mock-profile", f.backend.mock_profile,
                 "Mock backend: timing model JSON (empty: Llama-3.1-8B on an H200)");
  app.add_option("--mock-speedup", f.backend.mock_speedup,
                 "Mock backend: simulated time runs this many times faster");
  app.add_option("--replicas", f.replicas, "Workers in this process, each on its own ports")
      ->check(CLI::Range(1, 1024));
  app.add_option("--port", f.ports,
                 "gRPC port (0: ephemeral); with replicas, P (P, P+1, ...) or a list");
  app.add_option("--metrics-port", f.metrics_ports,
                 "Prometheus port (0: ephemeral); with replicas, P or a list");
  app.add_option("--worker-id", f.server.service.worker_id, "Worker id (default hostname:pid)");
  app.add_option("--drain-timeout,--drain-timeout-s", f.drain_timeout_s,
                 "Seconds open requests get on SIGTERM")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--port-file", f.port_file, "Write {\"grpc_port\", \"metrics_port\"} here");
  app.add_option("--log-level", f.log_level, "trace|debug|info|warn|error|off");
  app.add_option("--log-format", f.log_format, "text | json");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: error: %s\n", spec.name.c_str(), e.what());
    return 1;
  }
  const tandem::Status status = Serve(f, spec);
  if (!status.ok()) {
    std::fprintf(stderr, "%s: error: %s\n", spec.name.c_str(), status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace tandem::worker
