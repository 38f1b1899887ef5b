// bench/engine_gpu: the cuda backend's decode and prefill speed on real model shapes with random
// bf16 weights (generated on the device), against the device's measured ceilings. Prints a table
// and writes JSON; bench/run_engine_gpu.sh runs it with the Hugging Face peer
// (bench/peers/hf_engine.py) in the same device call and bench/engine_gpu_report.py puts the two
// side by side.
//
// Decode rows: batch B of sequences whose context is C tokens (the KV pool holds seeded random
// values, so no prefill is timed or needed); one step = one token for each sequence through the
// runner (graph replay, greedy sampling on the device, the tokens read back), timed on the host
// around the whole step, median of --iters. Bandwidth fraction = (weight bytes + KV bytes read
// per step) / step time / measured copy bandwidth.
// Prefill rows: one prompt of L tokens in one step; TFLOP/s counts 2·params·L for the matrix
// products (no embedding, lm_head for the last row only) and 2·2·L²/2·head_dim·heads·layers for
// causal attention.
//
//   build/bin/bench_engine_gpu [--models llama-3.1-8b,llama-3.2-1b] [--decode-batches 1,8,32,64,128]
//       [--contexts 512,4096] [--prefill-lengths 512,2048,8192] [--iters 20] [--json-out F]
#include <CLI/CLI.hpp>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda/cuda_model_runner.h"
#include "engine/cuda/cuda_util.h"
#include "engine/cuda/gemm.h"
#include "engine/cuda/kernels.h"
#include "engine/engine_factory.h"
#include "model/weight_source.h"

namespace {

using Clock = std::chrono::steady_clock;
using tandem::BlockId;
using tandem::Status;
using tandem::engine::SequenceResult;
using tandem::engine::SequenceStep;
using tandem::engine::cuda::CudaEvent;
using tandem::engine::cuda::CudaModelRunner;
using tandem::engine::cuda::DeviceBuffer;
using tandem::engine::cuda::Gemm;
using tandem::engine::cuda::GemmOut;
using json = nlohmann::json;

void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

void CheckCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Times `fn` (which enqueues device work on `stream`) with events: median over `iters` after
// `warmup` runs, in milliseconds.
template <typename Fn>
double TimeDevice(cudaStream_t stream, int warmup, int iters, Fn&& fn) {
  auto start = CudaEvent::Create(true);
  auto stop = CudaEvent::Create(true);
  Check(start.status(), "event");
  Check(stop.status(), "event");
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    Check(start->Record(stream), "record");
    fn();
    Check(stop->Record(stream), "record");
    Check(stop->Synchronize(), "sync");
    float t = 0;
    CheckCuda(cudaEventElapsedTime(&t, start->get(), stop->get()), "elapsed");
    ms.push_back(t);
  }
  return Median(ms);
}

struct Ceilings {
  double copy_gbps = 0;     // (read + write) bytes / s of a large device-to-device copy
  double gemm_tflops = 0;   // bf16 8192³ through the backend's cuBLASLt wrapper
};

Ceilings MeasureCeilings() {
  Ceilings c;
  cudaStream_t stream;
  CheckCuda(cudaStreamCreate(&stream), "stream");
  {
    const size_t bytes = size_t{2} << 30;
    auto a = DeviceBuffer::Create(bytes);
    auto b = DeviceBuffer::Create(bytes);
    Check(a.status(), "alloc");
    Check(b.status(), "alloc");
    CheckCuda(cudaMemset(a->data(), 1, bytes), "memset");
    const double ms = TimeDevice(stream, 3, 10, [&] {
      CheckCuda(cudaMemcpyAsync(b->data(), a->data(), bytes, cudaMemcpyDeviceToDevice, stream),
                "copy");
    });
    c.copy_gbps = 2.0 * bytes / (ms * 1e-3) / 1e9;
  }
  {
    const int n = 8192;
    auto gemm = Gemm::Create();
    Check(gemm.status(), "gemm");
    const size_t elems = size_t{n} * n;
    auto a = DeviceBuffer::Create(elems * 2);
    auto w = DeviceBuffer::Create(elems * 2);
    auto out = DeviceBuffer::Create(elems * 2);
    Check(a.status(), "alloc");
    Check(w.status(), "alloc");
    Check(out.status(), "alloc");
    // Random bits of small bf16 values (never zeros): 0x3c00..0x3cff with a random sign.
    std::vector<uint16_t> host(elems);
    std::mt19937 rng(7);
    for (auto& v : host) v = static_cast<uint16_t>(0x3c00 | (rng() & 0x80ff));
    CheckCuda(cudaMemcpy(a->data(), host.data(), elems * 2, cudaMemcpyHostToDevice), "upload");
    CheckCuda(cudaMemcpy(w->data(), host.data(), elems * 2, cudaMemcpyHostToDevice), "upload");
    const double ms = TimeDevice(stream, 3, 10, [&] {
      Check((*gemm)->Run(a->data(), w->data(), out->data(), n, n, n, GemmOut::kBf16, stream),
            "gemm");
    });
    c.gemm_tflops = 2.0 * n * n * static_cast<double>(n) / (ms * 1e-3) / 1e12;
  }
  CheckCuda(cudaStreamDestroy(stream), "stream");
  return c;
}

struct Shape {
  double matrix_params = 0;  // every layer matrix (what a token's forward multiplies by)
  double head_params = 0;    // lm_head (read once per step, used for sampled rows only)
  double kv_bytes_per_token = 0;
  double attn_flops_coeff = 0;  // head_dim · heads · layers
};

Shape ShapeOf(const tandem::model::ModelConfig& c) {
  Shape s;
  const double hidden = c.hidden_size;
  const double q = static_cast<double>(c.num_attention_heads) * c.head_dim;
  const double kv = static_cast<double>(c.num_key_value_heads) * c.head_dim;
  const double per_layer = hidden * (q + 2 * kv) + q * hidden + 3.0 * hidden * c.intermediate_size;
  s.matrix_params = per_layer * c.num_hidden_layers;
  s.head_params = hidden * c.vocab_size;
  s.kv_bytes_per_token = 2.0 * 2.0 * kv * c.num_hidden_layers;
  s.attn_flops_coeff = static_cast<double>(c.head_dim) * c.num_attention_heads * c.num_hidden_layers;
  return s;
}

// The model's matrix products alone at decode and prefill row counts, dispatched as the runner
// does (skinny kernel up to 8 rows, cuBLASLt with split-K for larger decode batches, without for
// prefill): where the step time goes.
json GemmRows(const tandem::model::ModelConfig& c, const std::vector<int>& ms) {
  const int hidden = c.hidden_size;
  const int q = c.num_attention_heads * c.head_dim;
  const int kv = c.num_key_value_heads * c.head_dim;
  const struct {
    const char* name;
    int n, k;
  } shapes[] = {{"qkv", q + 2 * kv, hidden},
                {"o", hidden, q},
                {"gate_up", 2 * c.intermediate_size, hidden},
                {"down", hidden, c.intermediate_size},
                {"lm_head", c.vocab_size, hidden}};
  auto gemm = Gemm::Create();
  Check(gemm.status(), "gemm");
  cudaStream_t stream;
  CheckCuda(cudaStreamCreate(&stream), "stream");
  json rows = json::array();
  std::printf("%-8s %6s %10s %10s %10s\n", "gemm", "m", "us", "GB/s", "TFLOP/s");
  for (const auto& shape : shapes) {
    for (int m : ms) {
      // Several weight copies in rotation, so that no timed product reads from L2.
      const size_t w_bytes = size_t{2} * shape.n * shape.k;
      const int copies = static_cast<int>(std::max<size_t>(1, (size_t{256} << 20) / w_bytes));
      std::vector<DeviceBuffer> w;
      for (int i = 0; i < copies; ++i) {
        auto buf = DeviceBuffer::Create(w_bytes);
        Check(buf.status(), "alloc");
        w.push_back(std::move(*buf));
        tandem::engine::cuda::RandomFillParams fill;
        fill.dst = w.back().data();
        fill.count = static_cast<int64_t>(w_bytes / 2);
        fill.key = 99 + i;
        fill.scale = 0.03f;
        CheckCuda(tandem::engine::cuda::LaunchRandomFill(fill, stream), "fill");
      }
      auto a = DeviceBuffer::Create(size_t{2} * m * shape.k);
      auto out = DeviceBuffer::Create(size_t{4} * m * shape.n);
      Check(a.status(), "alloc");
      Check(out.status(), "alloc");
      tandem::engine::cuda::RandomFillParams fill;
      fill.dst = a->data();
      fill.count = int64_t{m} * shape.k;
      fill.key = 7;
      fill.scale = 1.0f;
      CheckCuda(tandem::engine::cuda::LaunchRandomFill(fill, stream), "fill");
      int turn = 0;
      const double ms_per = TimeDevice(stream, 3, 20, [&] {
        // As a decode batch of m sequences runs it (prefill-sized m: cuBLASLt, no split-K).
        const int single = m <= Gemm::kSplitKMaxRows ? m : 0;
        Check((*gemm)->RunRows(a->data(), w[turn++ % copies].data(), out->data(), m, single,
                               shape.n, shape.k, GemmOut::kBf16, stream),
              "gemm");
      });
      const double bytes = static_cast<double>(w_bytes) + 2.0 * m * (shape.k + shape.n);
      const double gbps = bytes / (ms_per * 1e-3) / 1e9;
      const double tflops = 2.0 * m * shape.n * static_cast<double>(shape.k) / (ms_per * 1e-3) / 1e12;
      std::printf("%-8s %6d %10.1f %10.0f %10.1f\n", shape.name, m, ms_per * 1e3, gbps, tflops);
      rows.push_back({{"matrix", shape.name}, {"m", m}, {"n", shape.n}, {"k", shape.k},
                      {"us", ms_per * 1e3}, {"gbps", gbps}, {"tflops", tflops}});
    }
  }
  CheckCuda(cudaStreamDestroy(stream), "stream");
  return rows;
}

// Blocks [first, first + count) as a table.
std::vector<BlockId> Table(int first, int count) {
  std::vector<BlockId> t;
  t.reserve(count);
  for (int i = 0; i < count; ++i) t.push_back(BlockId(first + i));
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tandem cuda engine benchmark (decode and prefill on real model shapes)"};
  std::vector<std::string> models = {"llama-3.1-8b", "llama-3.2-1b"};
  std::vector<int> batches = {1, 8, 32, 64, 128};
  std::vector<int> contexts = {512, 4096};
  std::vector<int> prefill_lengths = {512, 2048, 8192};
  int iters = 20;
  int warmup = 3;
  std::string json_out = "bench_engine_gpu.json";
  bool graphs = true;
  bool gemm_table = true;
  bool profile = false;
  app.add_option("--models", models, "built-in model shapes")->delimiter(',');
  app.add_option("--decode-batches", batches)->delimiter(',');
  app.add_option("--contexts", contexts, "decode contexts (0: no decode rows)")->delimiter(',');
  app.add_option("--prefill-lengths", prefill_lengths, "prompt lengths (0: no prefill rows)")
      ->delimiter(',');
  app.add_option("--iters", iters);
  app.add_option("--warmup", warmup);
  app.add_option("--json-out", json_out);
  app.add_option("--graphs", graphs, "decode through CUDA graphs");
  app.add_option("--gemm-table", gemm_table, "time the model's matrix products alone first");
  app.add_flag("--profile", profile,
               "one more step per row between cudaProfilerStart/Stop (ncu --profile-from-start off)");
  CLI11_PARSE(app, argc, argv);

  cudaDeviceProp prop{};
  CheckCuda(cudaGetDeviceProperties(&prop, 0), "device");
  const Ceilings ceil = MeasureCeilings();
  std::printf("device %s: copy %.0f GB/s, bf16 GEMM 8192^3 %.0f TFLOP/s\n", prop.name,
              ceil.copy_gbps, ceil.gemm_tflops);
  json out = {{"device", prop.name},
              {"copy_gbps", ceil.copy_gbps},
              {"gemm_tflops", ceil.gemm_tflops},
              {"rows", json::array()}};

  const int block_size = 16;
  for (const std::string& name : models) {
    auto loaded = tandem::engine::LoadModel({.model = "builtin:" + name});
    Check(loaded.status(), "model");
    const auto& config = loaded->config;
    const Shape shape = ShapeOf(config);
    if (gemm_table) {
      std::printf("\n%s matrix products:\n", name.c_str());
      out["gemm_" + name] = GemmRows(config, {1, 8, 64, 128, 2048});
    }
    int max_batch = 0, max_context = 0, max_prefill = 0;
    for (int b : batches) max_batch = std::max(max_batch, b);
    for (int c : contexts) max_context = std::max(max_context, c);
    max_context = std::max(max_context, 1);
    for (int l : prefill_lengths) max_prefill = std::max(max_prefill, l);
    const int blocks_per_seq = (max_context + block_size - 1) / block_size;
    const int num_blocks =
        std::max(max_batch * blocks_per_seq, (max_prefill + block_size - 1) / block_size);
    tandem::engine::cuda::CudaRunnerOptions options;
    options.num_blocks = num_blocks;
    options.block_size = block_size;
    options.cuda_graphs = graphs;
    const auto load_start = Clock::now();
    auto runner = CudaModelRunner::Create(config, *loaded->weights, options);
    Check(runner.status(), "runner");
    Check((*runner)->FillKvRandom(1), "kv fill");
    std::printf("\n%s: %.2fB matrix params, %d KV blocks, loaded in %.1f s\n", name.c_str(),
                (shape.matrix_params + shape.head_params) / 1e9, num_blocks,
                std::chrono::duration<double>(Clock::now() - load_start).count());
    std::printf("%-8s %6s %8s %10s %12s %8s\n", "kind", "batch", "len", "ms", "tok/s", "roof");

    tandem::SamplingParams greedy;
    greedy.temperature = 0.0f;
    std::mt19937 rng(42);
    std::uniform_int_distribution<int32_t> token(0, config.vocab_size - 1);
    std::vector<SequenceResult> results;

    // Decode.
    for (int context : contexts) {
      if (context <= 0) continue;  // --contexts 0: prefill rows only
      for (int batch : batches) {
        const int blocks = (context + block_size - 1) / block_size;
        std::vector<std::vector<BlockId>> tables(batch);
        std::vector<std::vector<int32_t>> tokens(batch, std::vector<int32_t>(1));
        std::vector<SequenceStep> steps(batch);
        for (int s = 0; s < batch; ++s) {
          tables[s] = Table(s * blocks_per_seq, blocks);
          tokens[s][0] = token(rng);
          steps[s].tokens = tokens[s];
          steps[s].start_pos = context - 1;
          steps[s].block_table = tables[s];
          steps[s].logits_from = 1;
          steps[s].sample = true;
          steps[s].sampling.params = &greedy;
        }
        for (int i = 0; i < warmup; ++i) Check((*runner)->Execute(steps, &results), "decode");
        std::vector<double> ms;
        for (int i = 0; i < iters; ++i) {
          const auto t0 = Clock::now();
          Check((*runner)->Execute(steps, &results), "decode");
          ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        }
        if (profile) {
          CheckCuda(cudaProfilerStart(), "profiler");
          Check((*runner)->Execute(steps, &results), "decode");
          CheckCuda(cudaProfilerStop(), "profiler");
        }
        const double step_ms = Median(ms);
        const double bytes = 2.0 * (shape.matrix_params + shape.head_params) +
                             shape.kv_bytes_per_token * batch * context;
        const double roof = bytes / (step_ms * 1e-3) / (ceil.copy_gbps * 1e9);
        const double tok_s = batch / (step_ms * 1e-3);
        std::printf("%-8s %6d %8d %10.3f %12.1f %7.1f%%\n", "decode", batch, context, step_ms,
                    tok_s, 100 * roof);
        std::fflush(stdout);
        out["rows"].push_back({{"model", name},
                               {"kind", "decode"},
                               {"batch", batch},
                               {"context", context},
                               {"ms", step_ms},
                               {"tokens_per_s", tok_s},
                               {"bandwidth_fraction", roof},
                               {"bytes_per_step", bytes}});
      }
    }

    // Prefill.
    for (int length : prefill_lengths) {
      if (length <= 0) continue;  // --prefill-lengths 0: decode rows only
      std::vector<int32_t> prompt(length);
      for (auto& t : prompt) t = token(rng);
      const std::vector<BlockId> table = Table(0, (length + block_size - 1) / block_size);
      SequenceStep step;
      step.tokens = prompt;
      step.block_table = table;
      step.logits_from = length;
      step.sample = true;
      step.sampling.params = &greedy;
      const int n = length >= 8192 ? std::max(3, iters / 4) : iters;
      for (int i = 0; i < std::min(warmup, 2); ++i) {
        Check((*runner)->Execute({&step, 1}, &results), "prefill");
      }
      std::vector<double> ms;
      for (int i = 0; i < n; ++i) {
        const auto t0 = Clock::now();
        Check((*runner)->Execute({&step, 1}, &results), "prefill");
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      if (profile) {
        CheckCuda(cudaProfilerStart(), "profiler");
        Check((*runner)->Execute({&step, 1}, &results), "prefill");
        CheckCuda(cudaProfilerStop(), "profiler");
      }
      const double step_ms = Median(ms);
      const double flops = 2.0 * shape.matrix_params * length + 2.0 * shape.head_params +
                           2.0 * 2.0 * length * static_cast<double>(length) / 2.0 *
                               shape.attn_flops_coeff;
      const double tflops = flops / (step_ms * 1e-3) / 1e12;
      const double tok_s = length / (step_ms * 1e-3);
      std::printf("%-8s %6d %8d %10.3f %12.1f %7.1f%%\n", "prefill", 1, length, step_ms, tok_s,
                  100 * tflops / ceil.gemm_tflops);
      std::fflush(stdout);
      out["rows"].push_back({{"model", name},
                             {"kind", "prefill"},
                             {"batch", 1},
                             {"length", length},
                             {"ms", step_ms},
                             {"tokens_per_s", tok_s},
                             {"tflops", tflops},
                             {"gemm_fraction", tflops / ceil.gemm_tflops}});
    }
  }
  std::ofstream(json_out) << out.dump(2) << "\n";
  std::printf("\nwrote %s\n", json_out.c_str());
  return 0;
}
