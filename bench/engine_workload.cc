// bench_engine_workload: the bare engine under the workload `tandem bench --dataset random` sends
// a server — N requests of input_len random prompt tokens and output_len forced output tokens,
// at most C in flight (closed loop) — submitted in-process to LlmEngine, no gRPC, no HTTP. Its
// output tokens/s, TTFT and TPOT are the baseline the serving stack is measured against
// (issue 15: `tandem serve` + `tandem bench` on the same GPU, same workload; the ratio is what
// the stack costs).
//
// Usage: bench_engine_workload --model builtin:llama-3.1-8b --backend cuda --input-len 1000
//          --output-len 1000 --concurrency 64 --num-requests 192 [--kv-cache-size 40GiB]
//          [--json-out FILE]
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <vector>

#include "cli/bench/metrics.h"
#include "common/parse.h"
#include "engine/engine_factory.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The JSON object of one latency's statistics, as tandem bench reports them.
nlohmann::json StatsJson(const std::vector<double>& values) {
  const tandem::bench::LatencyStats s = tandem::bench::Summarize(values);
  return {{"mean", s.mean.value_or(0)}, {"p50", s.p50.value_or(0)}, {"p99", s.p99.value_or(0)}};
}

struct InFlight {
  std::shared_ptr<tandem::OutputStream> stream;
  Clock::time_point start;
  std::optional<Clock::time_point> first;
  int tokens = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string model = "builtin:llama-3.1-8b", backend = "cuda", kv_cache_size = "40GiB";
  std::string json_out;
  int input_len = 1000, output_len = 1000, concurrency = 64, num_requests = 192;
  int max_num_batched_tokens = 2048;
  uint64_t seed = 0;
  CLI::App app("bench_engine_workload: the bare engine under a serving workload");
  app.add_option("--model", model, "Checkpoint dir or builtin:NAME (random weights)");
  app.add_option("--backend", backend, "cpu, cuda or mock");
  app.add_option("--kv-cache-size", kv_cache_size, "KV pool budget");
  app.add_option("--input-len", input_len);
  app.add_option("--output-len", output_len);
  app.add_option("--concurrency", concurrency, "Requests in flight (and max-num-seqs)");
  app.add_option("--num-requests", num_requests);
  app.add_option("--max-num-batched-tokens", max_num_batched_tokens);
  app.add_option("--seed", seed);
  app.add_option("--json-out", json_out);
  CLI11_PARSE(app, argc, argv);

  tandem::engine::BackendOptions b;
  b.backend = backend;
  auto bytes = tandem::ParseByteSize(kv_cache_size, "--kv-cache-size");
  if (!bytes.ok()) {
    std::fprintf(stderr, "error: %s\n", bytes.status().ToString().c_str());
    return 1;
  }
  b.kv_cache_bytes = *bytes;
  tandem::engine::EngineOptions options;
  options.max_num_seqs = concurrency;
  options.max_num_batched_tokens = max_num_batched_tokens;
  options.enable_prefix_caching = false;  // Random prompts share nothing anyway.
  auto engine = tandem::engine::CreateEngine(
      {.model = model, .random_weights = true, .weights_seed = seed}, b, options);
  if (!engine.ok()) {
    std::fprintf(stderr, "error: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> token(1000, (*engine)->vocab_size() - 1);
  auto request = [&] {
    tandem::GenerateRequest r;
    r.prompt_tokens.resize(input_len);
    for (auto& t : r.prompt_tokens) t = token(rng);
    r.sampling.max_tokens = output_len;
    r.sampling.ignore_eos = true;
    r.sampling.temperature = 0;
    return r;
  };
  // Warm-up: one short request (graph capture, allocator, first kernels).
  {
    tandem::GenerateRequest r = request();
    r.sampling.max_tokens = 8;
    auto [id, stream] = (*engine)->Submit(r).value();
    while (!stream->Pop()->finished) {
    }
  }
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  std::vector<InFlight> open;
  std::vector<double> ttft, tpot, e2e;
  int submitted = 0, completed = 0, failed = 0;
  long long output_tokens = 0;
  const auto start = Clock::now();
  while (completed + failed < num_requests) {
    while (static_cast<int>(open.size()) < concurrency && submitted < num_requests) {
      auto submit = (*engine)->Submit(request());
      ++submitted;
      if (!submit.ok()) {
        ++failed;
        continue;
      }
      submit->second->SetNotify([&] {
        std::lock_guard lock(mu);
        ready = true;
        cv.notify_one();
      });
      open.push_back({submit->second, Clock::now(), std::nullopt, 0});
    }
    {
      std::unique_lock lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return ready; });
      ready = false;
    }
    for (size_t i = 0; i < open.size();) {
      InFlight& f = open[i];
      bool done = false;
      while (auto out = f.stream->TryPop()) {
        const auto now = Clock::now();
        if (!out->tokens.empty() && !f.first) f.first = now;
        f.tokens += static_cast<int>(out->tokens.size());
        if (out->finished) {
          done = true;
          if (out->finish_reason == tandem::FinishReason::kError) {
            ++failed;
            break;
          }
          ++completed;
          output_tokens += f.tokens;
          ttft.push_back(Seconds(*f.first - f.start) * 1e3);
          e2e.push_back(Seconds(now - f.start) * 1e3);
          if (f.tokens > 1) tpot.push_back(Seconds(now - *f.first) * 1e3 / (f.tokens - 1));
          break;
        }
      }
      if (done) {
        open[i] = std::move(open.back());
        open.pop_back();
      } else {
        ++i;
      }
    }
  }
  const double duration = Seconds(Clock::now() - start);
  nlohmann::json j = {{"model", model},
                      {"backend", backend},
                      {"input_len", input_len},
                      {"output_len", output_len},
                      {"concurrency", concurrency},
                      {"completed", completed},
                      {"failed", failed},
                      {"duration_s", duration},
                      {"output_throughput", output_tokens / duration},
                      {"request_throughput", completed / duration},
                      {"ttft_ms", StatsJson(ttft)},
                      {"tpot_ms", StatsJson(tpot)},
                      {"e2e_ms", StatsJson(e2e)}};
  std::printf(
      "| engine | backend | isl/osl | concurrency | done | output tok/s | TTFT p50 ms | "
      "TPOT p50 ms |\n|---|---|---|---:|---:|---:|---:|---:|\n");
  std::printf("| %s | %s | %d/%d | %d | %d | %.0f | %.1f | %.2f |\n", model.c_str(),
              backend.c_str(), input_len, output_len, concurrency, completed,
              output_tokens / duration, j["ttft_ms"]["p50"].get<double>(),
              j["tpot_ms"]["p50"].get<double>());
  if (!json_out.empty()) std::ofstream(json_out) << j.dump(2) << "\n";
  return failed == 0 ? 0 : 1;
}
