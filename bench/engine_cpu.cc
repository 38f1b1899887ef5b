// bench/engine_cpu: prefill and decode throughput of the CPU backend on a ~100M-parameter Llama
// configuration with random weights, at batch 1 and 8. Prints a table and writes JSON.
//
//   build/bin/bench_engine_cpu [--model builtin:llama-100m] [--prompt-len 256]
//                              [--decode-tokens 32] [--json-out bench_engine_cpu.json]
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "engine/engine_factory.h"

namespace {

using Clock = std::chrono::steady_clock;
using tandem::GenerateRequest;

struct Row {
  int batch = 0;
  double prefill_tok_s = 0;
  double prefill_ms = 0;
  double decode_tok_s = 0;
  double decode_ms_per_step = 0;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::vector<GenerateRequest> Requests(int batch, int prompt_len, int max_tokens, int vocab) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<GenerateRequest> out(batch);
  for (auto& r : out) {
    r.prompt_tokens.resize(prompt_len);
    for (auto& t : r.prompt_tokens) t = dist(rng);
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
  }
  return out;
}

// Submits the batch at once; returns the time until every first token (prefill) and the time
// from the last first token to the last token (decode).
std::pair<double, double> RunBatch(tandem::engine::LlmEngine& engine,
                                   const std::vector<GenerateRequest>& requests) {
  const auto start = Clock::now();
  std::vector<std::shared_ptr<tandem::OutputStream>> streams;
  for (const auto& r : requests) streams.push_back(engine.Submit(r)->second);
  Clock::time_point first_done = start, last_done = start;
  std::vector<bool> got_first(streams.size(), false);
  size_t finished = 0;
  std::vector<bool> done(streams.size(), false);
  while (finished < streams.size()) {
    for (size_t i = 0; i < streams.size(); ++i) {
      if (done[i]) continue;
      while (auto out = streams[i]->TryPop()) {
        const auto now = Clock::now();
        if (!got_first[i] && !out->tokens.empty()) {
          got_first[i] = true;
          first_done = std::max(first_done, now);
        }
        if (out->finished) {
          done[i] = true;
          ++finished;
          last_done = std::max(last_done, now);
          break;
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return {Seconds(first_done - start), Seconds(last_done - first_done)};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("CPU engine throughput");
  std::string model = "builtin:llama-100m";
  int prompt_len = 256;
  int decode_tokens = 32;
  int repeats = 3;
  std::string json_out = "bench_engine_cpu.json";
  std::vector<int> batches = {1, 8};
  app.add_option("--model", model);
  app.add_option("--prompt-len", prompt_len);
  app.add_option("--decode-tokens", decode_tokens);
  app.add_option("--repeats", repeats, "Runs per batch size; the median is reported");
  app.add_option("--batch", batches);
  app.add_option("--json-out", json_out);
  CLI11_PARSE(app, argc, argv);

  tandem::engine::ModelSpec spec;
  spec.model = model;
  spec.random_weights = true;
  spec.weights_seed = 1;
  tandem::engine::EngineOptions options;
  options.enable_prefix_caching = false;  // Every run computes its prompt.
  auto engine = tandem::engine::CreateEngine(spec, {}, options);
  if (!engine.ok()) {
    std::fprintf(stderr, "bench_engine_cpu: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  const auto& cfg = (*engine)->config();
  // Warm-up: page in the weights, size the buffers.
  RunBatch(**engine, Requests(1, 16, 2, cfg.vocab_size));

  std::vector<Row> rows;
  for (int batch : batches) {
    std::vector<double> prefill, decode;
    for (int r = 0; r < repeats; ++r) {
      auto [p, d] = RunBatch(**engine, Requests(batch, prompt_len, decode_tokens, cfg.vocab_size));
      prefill.push_back(p);
      decode.push_back(d);
    }
    std::sort(prefill.begin(), prefill.end());
    std::sort(decode.begin(), decode.end());
    const double p = prefill[prefill.size() / 2];
    const double d = decode[decode.size() / 2];
    Row row;
    row.batch = batch;
    row.prefill_ms = p * 1e3;
    row.prefill_tok_s = batch * prompt_len / p;
    row.decode_ms_per_step = d * 1e3 / (decode_tokens - 1);
    row.decode_tok_s = batch * (decode_tokens - 1) / d;
    rows.push_back(row);
  }

  std::printf("bench_engine_cpu model=%s layers=%d hidden=%d vocab=%d prompt=%d decode=%d "
              "threads=%u\n",
              model.c_str(), cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, prompt_len,
              decode_tokens, std::thread::hardware_concurrency());
  std::printf("| batch | prefill tok/s | prefill ms | decode tok/s | decode ms/step |\n");
  std::printf("|------:|--------------:|-----------:|-------------:|---------------:|\n");
  nlohmann::json j;
  j["benchmark"] = "engine_cpu";
  j["model"] = model;
  j["prompt_len"] = prompt_len;
  j["decode_tokens"] = decode_tokens;
  j["threads"] = std::thread::hardware_concurrency();
  for (const Row& r : rows) {
    std::printf("| %5d | %13.1f | %10.1f | %12.1f | %14.2f |\n", r.batch, r.prefill_tok_s,
                r.prefill_ms, r.decode_tok_s, r.decode_ms_per_step);
    j["rows"].push_back({{"batch", r.batch},
                         {"prefill_tokens_per_s", r.prefill_tok_s},
                         {"prefill_ms", r.prefill_ms},
                         {"decode_tokens_per_s", r.decode_tok_s},
                         {"decode_ms_per_step", r.decode_ms_per_step}});
  }
  std::ofstream(json_out) << j.dump(2) << "\n";
  std::printf("wrote %s\n", json_out.c_str());
  return 0;
}
