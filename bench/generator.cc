// bench_generator: the ceiling of `tandem bench`'s load generator on one core.
//
// An instant OpenAI-compatible streaming server (FakeServer: every chunk of a response written
// at once, /v1/models answered) runs on its own thread pinned to --server-cpu; the real
// generator code (HttpClient + RunLoad, token-id prompts rendered per request) runs on this
// thread pinned to --client-cpu. Two phases: short responses (requests/s) and long ones
// (streamed tokens/s). The generator's CPU time is this thread's, so the per-CPU-second figures
// hold even when the machine is shared.
//
// Usage: bench_generator [--requests 100000] [--concurrency 64] [--json-out bench_generator.json]
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "bench_util.h"
#include "cli/bench/arrival.h"
#include "cli/bench/fake_server.h"
#include "cli/bench/http_client.h"
#include "cli/bench/metrics.h"
#include "cli/bench/runner.h"

namespace {

namespace tb = tandem::bench;

// The server's answer: as many one-token chunks as max_tokens asks for. Built once per length,
// on the server thread.
tb::FakeResponse Answer(const tb::FakeRequest& request, std::map<int, tb::FakeResponse>* cache) {
  if (request.path.ends_with("/models")) {
    return tb::JsonResponse(200, tb::ModelsJson("instant", 32000));
  }
  const size_t at = request.body.find("\"max_tokens\":");
  const int tokens = at == std::string::npos ? 1 : std::atoi(request.body.c_str() + at + 13);
  auto it = cache->find(tokens);
  if (it == cache->end()) {
    it = cache->emplace(tokens, tb::CompletionStream(tokens, {}, {}, 16, 0)).first;
  }
  return it->second;
}

struct Phase {
  std::string name;
  int requests;
  int output_tokens;
};

struct PhaseResult {
  double wall_s = 0, cpu_s = 0;
  int64_t completed = 0, failed = 0, tokens = 0;
  int64_t chunks = 0;  // Text chunks the generator parsed (must equal tokens here).
};

PhaseResult RunPhase(tb::HttpClient& client, const Phase& phase, int input_len, int concurrency,
                     int port) {
  tb::DatasetOptions d;
  d.input_len = input_len;
  d.output_len = phase.output_tokens;
  d.num_requests = phase.requests;
  const tb::Dataset dataset = tb::MakeRandomDataset(d);
  const std::vector<double> arrivals = tb::ArrivalOffsets(dataset, tb::ArrivalOptions());
  tb::RunOptions run;
  run.host_header = "127.0.0.1:" + std::to_string(port);
  run.body.model = "instant";
  run.max_concurrency = concurrency;
  const double cpu0 = tb::ThreadCpuSeconds();
  const auto wall0 = std::chrono::steady_clock::now();
  const tb::RunResult result = tb::RunLoad(client, dataset, arrivals, run, nullptr, nullptr);
  PhaseResult r;
  r.cpu_s = tb::ThreadCpuSeconds() - cpu0;
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  for (const tb::RequestRecord& record : result.records) {
    r.chunks += static_cast<int64_t>(record.content_s.size());
  }
  const tb::RunSummary s = tb::SummarizeRun(result.records, result.duration_s, {});
  r.completed = s.completed;
  r.failed = s.failed;
  r.tokens = s.total_output_tokens;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("bench_generator: tandem bench's requests/s and tokens/s on one core");
  int requests = 100000;
  int concurrency = 64;
  int input_len = 16;
  int short_tokens = 4;
  int long_tokens = 256;
  int client_cpu = 0, server_cpu = 1;
  std::string json_out = "bench_generator.json";
  app.add_option("--requests", requests, "requests per phase")->capture_default_str();
  app.add_option("--concurrency", concurrency, "requests in flight")->capture_default_str();
  app.add_option("--input-len", input_len, "prompt tokens (ids)")->capture_default_str();
  app.add_option("--short-tokens", short_tokens, "output tokens, requests phase")
      ->capture_default_str();
  app.add_option("--long-tokens", long_tokens, "output tokens, tokens phase")
      ->capture_default_str();
  app.add_option("--client-cpu", client_cpu)->capture_default_str();
  app.add_option("--server-cpu", server_cpu)->capture_default_str();
  app.add_option("--json-out", json_out)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::map<int, tb::FakeResponse> cache;  // Only the server thread touches it.
  tb::FakeServerOptions server_options;
  server_options.cpu = server_cpu;
  server_options.script = [&cache](const tb::FakeRequest& r) { return Answer(r, &cache); };
  auto server = tb::FakeServer::Start(server_options);
  if (!server.ok()) {
    std::fprintf(stderr, "bench_generator: %s\n", server.status().ToString().c_str());
    return 1;
  }
  tb::PinToCpu(client_cpu);
  tb::HttpClientOptions client_options;
  client_options.port = (*server)->port();
  auto client = tb::HttpClient::Create(client_options);
  if (!client.ok()) {
    std::fprintf(stderr, "bench_generator: %s\n", client.status().ToString().c_str());
    return 1;
  }
  // A short warm-up opens the connections and faults in the buffers.
  RunPhase(**client, {"warm-up", 2000, short_tokens}, input_len, concurrency, (*server)->port());

  const std::vector<Phase> phases = {{"requests", requests, short_tokens},
                                     {"tokens", requests / 4, long_tokens}};
  std::printf(
      "bench_generator: generator pinned to CPU %d, instant server on CPU %d; %d "
      "requests in flight, %d-token id prompts\n\n",
      client_cpu, server_cpu, concurrency, input_len);
  std::printf(
      "| phase | requests | tokens/req | failed | wall s | generator CPU s | req/s | "
      "tok/s | req per CPU-s | tok per CPU-s |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json out = nlohmann::json::array();
  int failed = 0;
  for (const Phase& phase : phases) {
    const PhaseResult r = RunPhase(**client, phase, input_len, concurrency, (*server)->port());
    const double req_s = r.completed / r.wall_s, tok_s = r.tokens / r.wall_s;
    const double req_cpu = r.completed / r.cpu_s, tok_cpu = r.tokens / r.cpu_s;
    std::printf("| %s | %lld | %d | %lld | %.2f | %.2f | %.0f | %.0f | %.0f | %.0f |\n",
                phase.name.c_str(), static_cast<long long>(r.completed), phase.output_tokens,
                static_cast<long long>(r.failed), r.wall_s, r.cpu_s, req_s, tok_s, req_cpu,
                tok_cpu);
    failed += static_cast<int>(r.failed);
    if (r.chunks != r.tokens) {
      std::fprintf(stderr, "bench_generator: %s: parsed %lld text chunks for %lld tokens\n",
                   phase.name.c_str(), static_cast<long long>(r.chunks),
                   static_cast<long long>(r.tokens));
      ++failed;
    }
    out.push_back({{"phase", phase.name},
                   {"requests", r.completed},
                   {"failed", r.failed},
                   {"tokens_per_request", phase.output_tokens},
                   {"text_chunks_parsed", r.chunks},
                   {"concurrency", concurrency},
                   {"input_len", input_len},
                   {"wall_s", r.wall_s},
                   {"generator_cpu_s", r.cpu_s},
                   {"requests_per_s", req_s},
                   {"tokens_per_s", tok_s},
                   {"requests_per_cpu_s", req_cpu},
                   {"tokens_per_cpu_s", tok_cpu}});
  }
  std::ofstream(json_out) << nlohmann::json{{"client_cpu", client_cpu},
                                            {"server_cpu", server_cpu},
                                            {"phases", out}}
                                 .dump(2)
                          << "\n";
  std::printf("\nwrote %s\n", json_out.c_str());
  return failed == 0 ? 0 : 1;
}
