// tandem-frontend: the OpenAI-compatible HTTP server and gRPC Inference service in front of
// tandem workers (ARCHITECTURE §1, §4). See src/frontend/README.md.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

#include "common/logging.h"
#include "common/status_macros.h"
#include "common/parse.h"
#include "frontend/frontend.h"
#include "router/worker_set.h"

namespace {

tandem::Status Main(int argc, char** argv, int* exit_code) {
  using tandem::frontend::FrontendOptions;
  FrontendOptions o;
  std::string workers, max_body = "1MiB", api_key, log_level = "info";
  CLI::App app{"tandem-frontend: OpenAI-compatible HTTP and gRPC front end of tandem workers"};
  app.add_option("--host", o.host, "Address to bind (default loopback; widen explicitly)");
  app.add_option("--port", o.port, "HTTP port (0 = ephemeral)");
  app.add_option("--grpc-port", o.grpc_port, "gRPC Inference port (0 = ephemeral)");
  app.add_option("--port-file", o.port_file, "Write {\"http_port\", \"grpc_port\"} JSON here");
  app.add_option("--workers", workers, "Worker gRPC endpoints host:port[,host:port...]")
      ->required();
  app.add_option("--model", o.model_dir, "Model directory (tokenizer, chat template)")->required();
  app.add_option("--served-model-name", o.served_model_name,
                 "Model name clients use (default: the directory's name)");
  app.add_option("--api-key", api_key, "Require 'Authorization: Bearer KEY' on /v1");
  app.add_option("--router-mode", o.router_mode, "round-robin | least-loaded");
  app.add_option("--max-body-size", max_body, "Largest request body (e.g. 1MiB); larger: 413");
  app.add_option("--drain-timeout-s", o.drain_timeout_s, "Seconds SIGTERM waits for requests");
  app.add_option("--http-threads", o.http_threads, "Asio threads");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    *exit_code = app.exit(e);
    return tandem::OkStatus();
  }
  TANDEM_RETURN_IF_ERROR(tandem::InitLogging(log_level));
  auto endpoints = tandem::router::ParseEndpoints(workers, "--workers");
  if (!endpoints.ok()) return endpoints.status();
  o.workers = *endpoints;
  auto body = tandem::ParseByteSize(max_body, "--max-body-size");
  if (!body.ok()) return body.status();
  o.max_body_size = *body;
  if (!api_key.empty()) o.api_key = api_key;
  auto frontend = tandem::frontend::Frontend::Create(o);
  if (!frontend.ok()) return frontend.status();
  tandem::Status s = (*frontend)->Run();
  if (!s.ok()) {
    // Requests still hold the pieces they run on: leave without tearing them down.
    spdlog::error("frontend drain incomplete error={}", s.ToString());
    spdlog::shutdown();
    std::_Exit(0);
  }
  *exit_code = 0;
  return tandem::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  int exit_code = 0;
  const tandem::Status s = Main(argc, argv, &exit_code);
  if (!s.ok()) {
    std::fprintf(stderr, "tandem-frontend: %s\n", s.ToString().c_str());
    return 1;
  }
  return exit_code;
}
