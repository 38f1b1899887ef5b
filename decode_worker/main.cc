// tandem-decode-worker: serves tandem.v1.Worker for one engine (aggregated role: it prefills
// and decodes). Parse flags, build, run until SIGTERM/SIGINT, drain.
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "common/lifecycle.h"
#include "common/logging.h"
#include "common/parse.h"
#include "common/status_macros.h"
#include "engine/engine_factory.h"
#include "worker/worker_server.h"

namespace {

struct Flags {
  tandem::engine::ModelSpec model;
  std::string weights = "checkpoint";
  tandem::engine::BackendOptions backend;
  std::string kv_cache_size = "1GiB";
  tandem::engine::EngineOptions engine;
  bool no_prefix_caching = false;
  tandem::worker::WorkerServerOptions server;
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

tandem::Status Serve(Flags& f) {
  TANDEM_ASSIGN_OR_RETURN(auto signals, tandem::TerminationSignals::Install());  // Before threads.
  TANDEM_RETURN_IF_ERROR(tandem::InitLogging(f.log_level, f.log_format));
  if (f.weights != "checkpoint" && f.weights != "random") {
    return tandem::InvalidArgumentError("--weights: expected 'checkpoint' or 'random'");
  }
  f.model.random_weights = f.weights == "random";
  TANDEM_ASSIGN_OR_RETURN(f.backend.kv_cache_bytes,
                          tandem::ParseByteSize(f.kv_cache_size, "--kv-cache-size"));
  f.engine.enable_prefix_caching = !f.no_prefix_caching;
  TANDEM_ASSIGN_OR_RETURN(auto engine, tandem::engine::CreateEngine(f.model, f.backend, f.engine));
  f.server.service.model = f.model.model;
  f.server.service.block_size = f.backend.block_size;
  if (f.server.service.worker_id.empty()) f.server.service.worker_id = DefaultWorkerId();
  TANDEM_ASSIGN_OR_RETURN(auto server,
                          tandem::worker::WorkerServer::Create(std::move(engine), f.server));
  if (!f.port_file.empty()) {
    TANDEM_RETURN_IF_ERROR(tandem::WritePortFile(
        f.port_file,
        {{"grpc_port", server->grpc_port()}, {"metrics_port", server->metrics_port()}}));
  }
  spdlog::info("worker ready grpc={}:{} metrics={}:{} model={} worker_id={}", f.server.host,
               server->grpc_port(), f.server.host, server->metrics_port(),
               tandem::Quoted(f.model.model), tandem::Quoted(f.server.service.worker_id));
  tandem::NotifyReady("serving on port " + std::to_string(server->grpc_port()));
  signals->Wait();
  tandem::NotifyStopping();
  server->Drain(std::chrono::milliseconds(static_cast<int64_t>(f.drain_timeout_s * 1000)));
  return tandem::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  tandem::ReexecWithPassiveOpenMp(argv);
  Flags f;
  CLI::App app("tandem-decode-worker: a tandem worker (aggregated role)", "tandem-decode-worker");
  app.option_defaults()->always_capture_default();
  app.add_option("--model", f.model.model, "Checkpoint dir, builtin:demo or builtin:llama-100m");
  app.add_option("--weights", f.weights, "checkpoint | random");
  app.add_option("--seed", f.model.weights_seed, "Seed of random weights");
  app.add_option("--backend", f.backend.backend, "Engine backend");
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
  app.add_option("--host", f.server.host, "Address to bind (gRPC and metrics)");
  app.add_option("--port", f.server.port, "gRPC port (0: ephemeral)");
  app.add_option("--metrics-port", f.server.metrics_port, "Prometheus port (0: ephemeral)");
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
    std::fprintf(stderr, "tandem-decode-worker: error: %s\n", e.what());
    return 1;
  }
  const tandem::Status status = Serve(f);
  if (!status.ok()) {
    std::fprintf(stderr, "tandem-decode-worker: error: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
