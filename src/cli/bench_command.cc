#include "cli/bench_command.h"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "cli/bench/bench.h"
#include "cli/bench/compare.h"

namespace tandem::cli {
namespace {

std::atomic<bool> g_stop{false};

// The first Ctrl-C (or SIGTERM) ends the run with a partial report; a second one kills.
void OnSignal(int signal) {
  g_stop.store(true);
  std::signal(signal, SIG_DFL);
}

struct BenchArgs {
  bench::BenchOptions options;
  std::string dataset = "random";
  std::optional<int> output_len;
  std::optional<int> num_requests;
  std::string compare_a, compare_b;
};

int RunCompare(const BenchArgs& args) {
  StatusOr<std::string> table = bench::CompareReportFiles(args.compare_a, args.compare_b);
  if (!table.ok()) {
    std::fprintf(stderr, "tandem bench compare: error: %s\n", table.status().message().c_str());
    return bench::kExitUsage;
  }
  std::fputs(table->c_str(), stdout);
  return bench::kExitOk;
}

int RunBenchArgs(BenchArgs& args) {
  auto kind = bench::ParseDatasetKind(args.dataset);
  if (!kind.ok()) {
    std::fprintf(stderr, "tandem bench: error: %s\n", kind.status().message().c_str());
    return bench::kExitUsage;
  }
  args.options.dataset.kind = *kind;
  args.options.dataset.output_len = args.output_len;
  args.options.dataset.num_requests = args.num_requests;
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const int code = bench::RunBench(args.options, &g_stop);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  return code;
}

}  // namespace

std::function<int()> AddBenchCommand(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  bench::BenchOptions& o = args->options;
  CLI::App* cmd = app.add_subcommand(
      "bench", "Load-test an OpenAI-compatible server (streaming) and report latency figures");
  cmd->require_subcommand(0, 1);
  cmd->add_option("--dataset", args->dataset, "random | sharegpt | mooncake | azure")
      ->capture_default_str();
  cmd->add_option("--path", o.dataset.path, "Trace file (sharegpt, mooncake, azure)");
  cmd->add_option("--input-len", o.dataset.input_len, "random: mean prompt tokens")
      ->capture_default_str();
  cmd->add_option("--output-len", args->output_len,
                  "Output tokens (random: mean, default 128; traces: replaces theirs)");
  cmd->add_option("--range-ratio", o.dataset.range_ratio,
                  "random: lengths uniform in [L*(1-R), L*(1+R)]")
      ->capture_default_str();
  cmd->add_option("--block-size", o.dataset.block_size, "mooncake: tokens per hash id")
      ->capture_default_str();
  cmd->add_option("--num-requests", args->num_requests,
                  "Requests per run (random: default 1000; traces: cut to this many)");
  cmd->add_option("--duration", o.duration_s,
                  "Seconds each run lasts at most (trace cut, requests in flight cancelled)");
  cmd->add_option("--request-rate", o.request_rate,
                  "Requests/s, or inf (default: trace timestamps, else inf)");
  cmd->add_option("--request-rates", o.request_rates, "Sweep: one run per rate, e.g. 1,2,4,8");
  cmd->add_option("--burstiness", o.burstiness, "Gamma shape of arrival gaps (1 = Poisson)")
      ->capture_default_str();
  cmd->add_option("--speedup", o.speedup, "Trace time is divided by this")->capture_default_str();
  cmd->add_option("--max-concurrency", o.max_concurrency,
                  "At most this many requests in flight (0 = no limit)")
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seeds prompts, lengths and arrivals")->capture_default_str();
  cmd->add_option("--base-url", o.base_url, "Server URL (/v1 is added)")->capture_default_str();
  cmd->add_option("--model", o.model, "Model name (default: the first of GET /v1/models)");
  cmd->add_option("--api-key", o.api_key,
                  "Bearer token (default: $TANDEM_API_KEY, then $OPENAI_API_KEY)");
  cmd->add_option("--endpoint", o.endpoint,
                  "completions | chat (default: chat for sharegpt, else completions)");
  cmd->add_option("--vocab-size", o.vocab_size,
                  "Token ids stay below this (default: the model's vocab_size, else 32000)");
  cmd->add_option("--request-timeout", o.request_timeout_s, "Seconds per request")
      ->capture_default_str();
  cmd->add_option("--connect-timeout", o.connect_timeout_s, "Seconds to connect")
      ->capture_default_str();
  cmd->add_option("--goodput", o.goodput, "SLOs in ms for goodput: ttft:MS,tpot:MS[,e2e:MS]");
  cmd->add_option("--json-out", o.json_out, "Write the JSON report (every request's timings)");
  cmd->add_option("--plots", o.plots_dir, "Write PNG plots into this folder");

  CLI::App* compare =
      cmd->add_subcommand("compare", "Print two --json-out reports side by side with B/A");
  compare->add_option("a", args->compare_a, "Report A")->required();
  compare->add_option("b", args->compare_b, "Report B")->required();

  return [args, compare]() {
    if (compare->parsed()) return RunCompare(*args);
    return RunBenchArgs(*args);
  };
}

}  // namespace tandem::cli
