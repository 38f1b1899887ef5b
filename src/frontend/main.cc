// tandem-frontend: the OpenAI-compatible HTTP server and gRPC Inference service in front of
// tandem workers (ARCHITECTURE §1, §4). See src/frontend/README.md.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

#include "common/api_key.h"
#include "common/logging.h"
#include "common/parse.h"
#include "common/status_macros.h"
#include "frontend/frontend.h"
#include "router/discovery.h"
#include "router/router.h"

namespace {

tandem::Status Main(int argc, char** argv, int* exit_code) {
  using tandem::frontend::FrontendOptions;
  FrontendOptions o;
  std::string workers, max_body = "1MiB", api_key, api_key_file, log_level = "info",
                       log_format = "text", router_mode = "kv";
  CLI::App app{"tandem-frontend: OpenAI-compatible HTTP and gRPC front end of tandem workers",
               "tandem-frontend"};
  app.option_defaults()->always_capture_default();
  app.add_option("--host", o.host, "Address to bind (loopback; widen explicitly)");
  app.add_option("--port", o.port, "HTTP port (0 = ephemeral)");
  app.add_option("--grpc-port", o.grpc_port, "gRPC Inference port (0 = ephemeral)");
  app.add_option("--port-file", o.port_file, "Write {\"http_port\", \"grpc_port\"} JSON here");
  auto* workers_opt =
      app.add_option("--workers", workers, "Worker gRPC endpoints host:port[,host:port...]");
  auto* workers_file_opt = app.add_option(
      "--workers-file", o.workers_file,
      "File listing the workers, one host:port per line ('#' comments); followed as it changes");
  workers_opt->excludes(workers_file_opt);
  app.add_option("--model", o.model_dir, "Model directory (tokenizer, chat template)")->required();
  app.add_option("--served-model-name", o.served_model_name,
                 "Model name clients use (empty: the directory's name)");
  app.add_option("--api-key", api_key,
                 "Require 'Authorization: Bearer KEY' on /v1 and gRPC (visible in ps: prefer "
                 "--api-key-file or $TANDEM_API_KEY)");
  app.add_option("--api-key-file", api_key_file, "Read the API key from this file");
  app.add_option("--router-mode", router_mode, "kv | round-robin | random | least-loaded");
  app.add_option("--router-overlap-weight", o.router.overlap_weight,
                 "Weight of prefill blocks against decode blocks in the kv router's cost");
  app.add_option("--router-host-weight", o.router.host_weight,
                 "A cached block on the host tier, as a fraction of a device hit");
  app.add_option("--router-disk-weight", o.router.disk_weight,
                 "A cached block on the disk tier, as a fraction of a device hit");
  app.add_option("--router-temperature", o.router.temperature,
                 "0: lowest cost wins; > 0: sample by softmax of -cost/T (normalized costs)");
  app.add_option("--router-seed", o.router.seed, "Seed of the router's draws (0: random)");
  app.add_option("--max-body-size", max_body, "Largest request body; larger: 413");
  app.add_option("--drain-timeout,--drain-timeout-s", o.drain_timeout_s,
                 "Seconds SIGTERM waits for requests before ending them with an error");
  app.add_option("--http-threads", o.http_threads, "Asio threads");
  app.add_option("--max-connections", o.max_connections,
                 "Open HTTP connections at most, beyond: 503 (0: from the open-file limit)");
  app.add_option("--keep-alive-timeout", o.keep_alive_timeout_s,
                 "Seconds an idle keep-alive connection stays open");
  app.add_option("--header-timeout", o.header_timeout_s,
                 "Seconds a client has to send a request header");
  app.add_option("--body-timeout", o.body_timeout_s, "Seconds a client has to send a body");
  app.add_option("--worker-stall-timeout", o.worker_stall_timeout_s,
                 "Seconds without a load report before a worker is taken out of routing and "
                 "its requests fail");
  app.add_option("--request-progress-timeout", o.request_progress_timeout_s,
                 "Seconds a request may wait for its worker's next message (0: forever)");
  app.add_option("--local-prefill-tokens", o.disaggregation.local_prefill_tokens,
                 "With prefill workers: a prompt whose part uncached on its decode worker is "
                 "shorter than this is prefilled there")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-prefill-queue-tokens", o.disaggregation.max_prefill_queue_tokens,
                 "With prefill workers: prefill on the decode worker when the chosen prefill "
                 "worker has more prompt tokens queued than this (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off");
  app.add_option("--log-format", log_format, "text | json");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    *exit_code = app.exit(e);
    return tandem::OkStatus();
  }
  tandem::HideArgValue(argc, argv, "--api-key");
  TANDEM_RETURN_IF_ERROR(tandem::InitLogging(log_level, log_format));
  if (workers.empty() && o.workers_file.empty()) {
    return tandem::InvalidArgumentError("--workers or --workers-file is required");
  }
  if (!workers.empty()) {
    TANDEM_ASSIGN_OR_RETURN(o.workers, tandem::router::ParseEndpoints(workers, "--workers"));
  }
  TANDEM_ASSIGN_OR_RETURN(o.router.mode, tandem::router::ParseRouterMode(router_mode));
  TANDEM_ASSIGN_OR_RETURN(o.max_body_size, tandem::ParseByteSize(max_body, "--max-body-size"));
  TANDEM_ASSIGN_OR_RETURN(o.api_key, tandem::ResolveApiKey(api_key, api_key_file));
  TANDEM_ASSIGN_OR_RETURN(auto frontend, tandem::frontend::Frontend::Create(o));
  tandem::Status s = frontend->Run();
  if (!s.ok()) {
    // Requests that were cut may still hold the pieces they ran on: leave without tearing down.
    spdlog::error("frontend drain incomplete error={}", tandem::Quoted(s.ToString()));
    spdlog::shutdown();
    std::_Exit(1);
  }
  *exit_code = 0;
  return tandem::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  int exit_code = 0;
  const tandem::Status s = Main(argc, argv, &exit_code);
  if (!s.ok()) {
    std::fprintf(stderr, "tandem-frontend: error: %s\n", s.ToString().c_str());
    return 1;
  }
  return exit_code;
}
