// bench/kvcache: the KV tiers' speed (issue 6), on any backend.
//
//   1. G1 ↔ G2: blocks copied between the engine's pool and the host tier's memory (pinned on the
//      cuda backend), against the number of blocks per batch, next to one plain copy of the same
//      bytes (cudaMemcpy pinned ↔ device on cuda, memcpy on cpu): the ceiling.
//   2. G2 ↔ G3: blocks written to and read back from the disk tier (O_DIRECT, io_uring).
//   3. Time to first token of a `--prompt`-token prompt whose first `--cached` tokens were computed
//      before and pushed out of the pool onto G2 (and onto G3), against computing it all.
//
//   bench_kvcache [--backend cuda] [--model builtin:llama-3.1-8b] [--weights random]
//                 [--blocks 1,8,64,512] [--prompt 8192] [--cached 8000] [--disk-dir DIR]
//                 [--json-out F]
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "engine/engine_factory.h"
#include "engine/llm_engine.h"
#include "kvcache/disk_store.h"
#include "kvcache/host_store.h"

#if TANDEM_BENCH_CUDA
#include <cuda_runtime.h>
#endif

namespace {

using namespace tandem;
using Clock = std::chrono::steady_clock;

template <typename T>
T Check(StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    std::fprintf(stderr, "bench_kvcache: %s: %s\n", what, v.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(v).value();
}

void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench_kvcache: %s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename Fn>
double MedianMs(int iters, Fn&& fn) {
  fn();  // warm-up
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = Clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return Median(ms);
}

double GBps(size_t bytes, double ms) { return static_cast<double>(bytes) / (ms * 1e-3) / 1e9; }

std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(3, vocab - 1);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = dist(rng);
  return t;
}

// The ceiling of a block copy: the same bytes in one copy between `host` and memory like the
// pool's (device memory on cuda, another host buffer on cpu), in GB/s.
class Ceiling {
 public:
  Ceiling(bool device, size_t bytes) : device_(device) {
#if TANDEM_BENCH_CUDA
    if (device_) {
      if (cudaMalloc(&pool_, bytes) != cudaSuccess) Check(InternalError("cudaMalloc"), "ceiling");
      return;
    }
#endif
    device_ = false;
    pool_ = std::malloc(bytes);
    std::memset(pool_, 1, bytes);
  }
  ~Ceiling() {
#if TANDEM_BENCH_CUDA
    if (device_) {
      cudaFree(pool_);
      return;
    }
#endif
    std::free(pool_);
  }
  void Copy(std::byte* host, size_t bytes, bool to_pool) {
#if TANDEM_BENCH_CUDA
    if (device_) {
      const cudaError_t e = to_pool ? cudaMemcpy(pool_, host, bytes, cudaMemcpyHostToDevice)
                                    : cudaMemcpy(host, pool_, bytes, cudaMemcpyDeviceToHost);
      if (e != cudaSuccess) Check(InternalError(cudaGetErrorString(e)), "ceiling copy");
      return;
    }
#endif
    if (to_pool) {
      std::memcpy(pool_, host, bytes);
    } else {
      std::memcpy(host, pool_, bytes);
    }
  }

 private:
  bool device_;
  void* pool_ = nullptr;
};

// Submit → first token, in ms.
double TimeToFirstToken(engine::LlmEngine& engine, std::vector<int32_t> prompt,
                        int* cached_tokens) {
  GenerateRequest r;
  r.prompt_tokens = std::move(prompt);
  r.sampling.max_tokens = 1;
  r.sampling.temperature = 0.0f;
  const auto t0 = Clock::now();
  auto submitted = Check(engine.Submit(std::move(r)), "submit");
  double ms = -1;
  while (true) {
    std::optional<RequestOutput> out = submitted.second->Pop();
    if (!out.has_value()) continue;
    if (ms < 0 && !out->tokens.empty()) {
      ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    }
    if (out->finished) {
      Check(out->error, "request");
      if (cached_tokens != nullptr) *cached_tokens = out->cached_prompt_tokens;
      break;
    }
  }
  return ms;
}

// Until every pool block is back (the previous request done and its offload copies committed),
// so that a measured request does not wait for the one before it.
void WaitIdle(const engine::LlmEngine& engine, int pool_blocks) {
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (engine.stats().blocks_available < pool_blocks && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tandem KV tier benchmark: G1<->G2, G2<->G3 and time to first token"};
  engine::ModelSpec model;
  model.model = "builtin:llama-3.1-8b";
  model.random_weights = true;
  engine::BackendOptions backend;
  backend.backend = "cuda";
  std::vector<int> block_counts = {1, 8, 64, 512};
  int prompt = 8192, cached = 8000, iters = 5, ttft_reps = 3;
  std::string disk_dir = std::filesystem::temp_directory_path().string();
  std::string json_out;
  app.add_option("--model", model.model);
  app.add_option("--backend", backend.backend);
  app.add_option("--block-size", backend.block_size);
  app.add_option("--blocks", block_counts, "blocks per batch")->delimiter(',');
  app.add_option("--prompt", prompt, "TTFT prompt tokens");
  app.add_option("--cached", cached, "of which computed before and held on G2 / G3");
  app.add_option("--iters", iters);
  app.add_option("--ttft-reps", ttft_reps);
  app.add_option("--disk-dir", disk_dir, "where the disk tier's file goes (a real file system)");
  app.add_option("--json-out", json_out);
  CLI11_PARSE(app, argc, argv);

  const int max_blocks = *std::max_element(block_counts.begin(), block_counts.end());
  const std::string disk_path = disk_dir + "/bench_kvcache-" + std::to_string(getpid());
  nlohmann::json out = {{"backend", backend.backend}, {"model", model.model}};

  // ---- 1 and 2: transfers -------------------------------------------------------------------
  {
    engine::LoadedModel loaded = Check(engine::LoadModel(model), "model");
    engine::BackendOptions pool = backend;
    pool.num_blocks = max_blocks;
    auto runner = Check(engine::CreateModelRunner(loaded.config, *loaded.weights, pool), "runner");
    const size_t block_bytes = runner->kv_layout().BlockBytes();
    kvcache::HostAllocator* allocator = runner->host_allocator();
    if (allocator == nullptr) allocator = &kvcache::AlignedHostAllocator();
    const size_t total = block_bytes * static_cast<size_t>(max_blocks);
    auto* host = static_cast<std::byte*>(Check(allocator->Allocate(total), "host memory"));
    std::memset(host, 0x3c, total);
    std::vector<BlockId> ids;
    std::vector<std::byte*> ptrs;
    for (int b = 0; b < max_blocks; ++b) {
      ids.push_back(BlockId(b));
      ptrs.push_back(host + static_cast<size_t>(b) * block_bytes);
    }
    std::printf("%s, block %.2f MiB (%s)\n", backend.backend.c_str(), block_bytes / 1048576.0,
                allocator == &kvcache::AlignedHostAllocator() ? "pageable host memory"
                                                               : "pinned host memory");
    Ceiling ceiling(backend.backend == "cuda", total);
    std::printf("%-9s %7s %12s %12s %12s %12s\n", "path", "blocks", "GB/s", "ceiling", "ratio",
                "ms");
    for (int n : block_counts) {
      const size_t bytes = block_bytes * static_cast<size_t>(n);
      const std::span<const BlockId> some(ids.data(), static_cast<size_t>(n));
      const double out_ms = MedianMs(iters, [&] {
        Check(runner->CopyBlocksOut(some, {ptrs.data(), static_cast<size_t>(n)}), "copy out");
      });
      const double in_ms = MedianMs(iters, [&] {
        Check(runner->CopyBlocksIn(some, {const_cast<const std::byte* const*>(ptrs.data()),
                                          static_cast<size_t>(n)}),
              "copy in");
      });
      const double ceil_out =
          GBps(bytes, MedianMs(iters, [&] { ceiling.Copy(host, bytes, false); }));
      const double ceil_in = GBps(bytes, MedianMs(iters, [&] { ceiling.Copy(host, bytes, true); }));
      for (const auto& [path, ms, ceil] :
           {std::tuple{"G1->G2", out_ms, ceil_out}, std::tuple{"G2->G1", in_ms, ceil_in}}) {
        const double gbps = GBps(bytes, ms);
        std::printf("%-9s %7d %12.2f %12.2f %11.0f%% %12.3f\n", path, n, gbps, ceil,
                    100 * gbps / ceil, ms);
        out["transfers"].push_back({{"path", path},
                                    {"blocks", n},
                                    {"block_bytes", block_bytes},
                                    {"gbps", gbps},
                                    {"ceiling_gbps", ceil},
                                    {"ms", ms}});
      }
    }
    // G2 <-> G3.
    auto disk = Check(kvcache::DiskStore::Create({.path = disk_path,
                                                  .block_bytes = block_bytes,
                                                  .capacity_blocks = max_blocks,
                                                  .admit_after_reuses = 0}),
                      "disk tier");
    for (int n : block_counts) {
      const size_t bytes = block_bytes * static_cast<size_t>(n);
      std::vector<BlockHash> hashes;
      std::vector<std::span<std::byte>> views;
      for (int b = 0; b < n; ++b) {
        hashes.push_back(static_cast<BlockHash>(b + 1));
        views.emplace_back(ptrs[static_cast<size_t>(b)], block_bytes);
      }
      const double write_ms = MedianMs(iters, [&] {
        disk->Clear();
        for (size_t b = 0; b < static_cast<size_t>(n); ++b) {
          Check(disk->Put(hashes[b], std::nullopt, views[b]).status(), "disk put");
        }
      });
      const double read_ms = MedianMs(iters, [&] {
        for (const Status& s : disk->GetMany(hashes, views)) Check(s, "disk get");
      });
      for (const auto& [path, ms] :
           {std::pair{"G2->G3", write_ms}, std::pair{"G3->G2", read_ms}}) {
        std::printf("%-9s %7d %12.2f %12s %12s %12.3f\n", path, n, GBps(bytes, ms), "-", "-", ms);
        out["transfers"].push_back({{"path", path},
                                    {"blocks", n},
                                    {"block_bytes", block_bytes},
                                    {"gbps", GBps(bytes, ms)},
                                    {"ms", ms}});
      }
    }
    disk.reset();
    std::filesystem::remove(disk_path);
    allocator->Free(host, total);
  }

  // ---- 3: time to first token -----------------------------------------------------------------
  // A pool of exactly one prompt's blocks: a fresh prompt of the same length pushes everything
  // cached out of it, so the measured prompt's first `cached` tokens are found on G2 / G3 only.
  const int block_size = backend.block_size;
  const int pool_blocks = (prompt + 1 + block_size - 1) / block_size;
  const int cached_blocks = cached / block_size;
  struct Mode {
    const char* name;
    engine::EngineOptions options;
  };
  std::vector<Mode> modes(3);
  modes[0].name = "recompute";
  modes[0].options.enable_prefix_caching = false;
  modes[1].name = "from G2";
  modes[1].options.host_cache_blocks = 2 * pool_blocks;
  modes[2].name = "from G3";
  modes[2].options.disk_cache_path = disk_path;
  modes[2].options.disk_cache_blocks = 2 * pool_blocks;
  modes[2].options.disk_cache_admit_after_reuses = 0;
  std::printf("\nTTFT of %d tokens, the first %d (%d blocks) computed before:\n", prompt,
              cached_blocks * block_size, cached_blocks);
  std::printf("%-10s %10s %10s %8s\n", "mode", "TTFT ms", "cached", "speedup");
  double recompute_ms = 0;
  for (Mode& m : modes) {
    m.options.max_num_batched_tokens = prompt + 1;
    engine::BackendOptions pool = backend;
    pool.num_blocks = pool_blocks;
    auto engine = Check(engine::CreateEngine(model, pool, m.options), "engine");
    const int vocab = engine->vocab_size();
    std::vector<double> ms;
    int cached_tokens = 0;
    for (int rep = 0; rep < ttft_reps + 1; ++rep) {  // the first is a warm-up
      std::vector<int32_t> tokens = RandomTokens(prompt, vocab, 1000 + static_cast<uint32_t>(rep));
      if (m.options.enable_prefix_caching) {
        TimeToFirstToken(*engine, {tokens.begin(), tokens.begin() + cached_blocks * block_size},
                         nullptr);
        TimeToFirstToken(*engine, RandomTokens(prompt, vocab, 5000 + static_cast<uint32_t>(rep)),
                         nullptr);  // pushes the prefix out of the pool
        WaitIdle(*engine, pool_blocks);
      }
      const double t = TimeToFirstToken(*engine, tokens, &cached_tokens);
      if (rep > 0) ms.push_back(t);
    }
    const double ttft = Median(ms);
    if (!m.options.enable_prefix_caching) recompute_ms = ttft;
    std::printf("%-10s %10.2f %10d %7.2fx\n", m.name, ttft, cached_tokens, recompute_ms / ttft);
    out["ttft"].push_back({{"mode", m.name},
                           {"prompt", prompt},
                           {"cached_tokens", cached_tokens},
                           {"ms", ttft},
                           {"speedup", recompute_ms / ttft}});
  }
  std::filesystem::remove(disk_path);
  if (!json_out.empty()) {
    std::ofstream(json_out) << out.dump(2) << "\n";
    std::printf("\nwrote %s\n", json_out.c_str());
  }
  return 0;
}
