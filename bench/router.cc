// bench_router: the KV-aware router's two hot paths on one core (issue 16).
//
//   apply:  KV events into the indexer, in block events per second (Stored events of
//           --event-blocks hashes, as a worker emits them for a prefill chunk; then Removed
//           events of the same size);
//   route:  Router::Route for prompts of --prompt-tokens tokens against --workers workers
//           holding --blocks blocks in all: p50/p99/max latency, half the prompts continuing a
//           cached conversation (full or partial hit), half new ones (a shared system prompt
//           and a fresh tail); plus the time to hash such a prompt (the frontend does it once per
//           request, outside the router's lock).
//
// The cluster is built the way conversations fill caches: --system-prompts shared system prompts
// (--system-blocks blocks), each conversation a chain continuing one of them, conversations
// spread over the workers. Targets (issue 16): >= 5M block events/s, Route p99 < 20 us for 64
// workers, 1M blocks, 8k-token prompts. Dynamo reports p99 < 10 us for its indexer (not run
// here: it is a Rust service); say where tandem stands.
//
// Usage: bench_router [--workers 64] [--blocks 1000000] [--prompt-tokens 8192]
//                     [--json-out bench_router.json]
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <set>
#include <vector>

#include "bench_util.h"
#include "cli/bench/metrics.h"
#include "router/kv_indexer.h"
#include "router/router.h"
#include "tandem/block_hash.h"

namespace {

using tandem::BlockHash;
namespace tr = tandem::router;

using tandem::bench::ThreadCpuSeconds;

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return tandem::bench::Percentile(v, p);
}

struct Conversation {
  int worker = 0;
  std::vector<int32_t> tokens;  // Whole blocks.
  std::vector<BlockHash> hashes;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("bench_router: KV event apply rate and Route latency of tandem's router");
  int workers = 64;
  int64_t blocks = 1000000;
  int prompt_tokens = 8192;
  int block_size = 16;
  int system_prompts = 64;
  int system_blocks = 64;
  int event_blocks = 16;
  int routes = 20000;
  int cpu = 0;
  std::string json_out = "bench_router.json";
  app.add_option("--workers", workers)->check(CLI::Range(1, 4096));
  app.add_option("--blocks", blocks, "Blocks held by all workers together")
      ->check(CLI::Range(int64_t{1000}, int64_t{100000000}));
  app.add_option("--prompt-tokens", prompt_tokens)->check(CLI::Range(64, 1 << 20));
  app.add_option("--block-size", block_size)->check(CLI::Range(1, 1024));
  app.add_option("--system-prompts", system_prompts)->check(CLI::Range(1, 100000));
  app.add_option("--system-blocks", system_blocks)->check(CLI::Range(0, 100000));
  app.add_option("--event-blocks", event_blocks, "Hashes per KV event")->check(CLI::Range(1, 4096));
  app.add_option("--routes", routes)->check(CLI::Range(100, 10000000));
  app.add_option("--cpu", cpu, "Core to pin to (-1: none)");
  app.add_option("--json-out", json_out);
  CLI11_PARSE(app, argc, argv);
  if (cpu >= 0) tandem::bench::PinToCpu(cpu);

  const int prompt_blocks = prompt_tokens / block_size;
  const uint64_t seed = tandem::BlockHashSeed("bench_router");
  std::mt19937_64 rng(1);
  auto random_tokens = [&](size_t n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng() % 128000);
    return t;
  };
  std::vector<std::vector<int32_t>> systems;
  for (int s = 0; s < system_prompts; ++s) {
    systems.push_back(random_tokens(size_t{static_cast<size_t>(system_blocks)} * block_size));
  }
  // Conversations of prompt_blocks blocks until the workers hold `blocks` in all (a system
  // prompt's blocks counted once per worker holding it).
  std::vector<Conversation> conversations;
  std::set<std::pair<int, size_t>> system_on_worker;
  int64_t held = 0;
  while (held < blocks) {
    Conversation c;
    c.worker = static_cast<int>(rng() % workers);
    const size_t system = rng() % systems.size();
    c.tokens = systems[system];
    if (!system_on_worker.emplace(c.worker, system).second) held -= system_blocks;
    const std::vector<int32_t> tail =
        random_tokens(size_t{static_cast<size_t>(prompt_blocks - system_blocks)} * block_size);
    c.tokens.insert(c.tokens.end(), tail.begin(), tail.end());
    c.hashes = tandem::HashBlocks(c.tokens, block_size, seed);
    held += static_cast<int64_t>(c.hashes.size());
    conversations.push_back(std::move(c));
  }

  // --- apply ---------------------------------------------------------------------------------
  tr::KvIndexer indexer;
  int64_t block_events = 0;
  double t0 = ThreadCpuSeconds();
  for (const Conversation& c : conversations) {
    for (size_t i = 0; i < c.hashes.size(); i += event_blocks) {
      const size_t n = std::min<size_t>(event_blocks, c.hashes.size() - i);
      indexer.Stored(static_cast<tr::WorkerSlot>(c.worker), tandem::KvTier::kDevice,
                     std::span(c.hashes).subspan(i, n));
      block_events += static_cast<int64_t>(n);
    }
  }
  const double stored_s = ThreadCpuSeconds() - t0;
  const size_t distinct = indexer.num_blocks();
  const size_t entries = indexer.num_entries();
  // Removed: every tenth conversation leaves its worker, and is stored again.
  int64_t removed_events = 0;
  t0 = ThreadCpuSeconds();
  for (size_t k = 0; k < conversations.size(); k += 10) {
    const Conversation& c = conversations[k];
    for (size_t i = 0; i < c.hashes.size(); i += event_blocks) {
      const size_t n = std::min<size_t>(event_blocks, c.hashes.size() - i);
      indexer.Removed(static_cast<tr::WorkerSlot>(c.worker), tandem::KvTier::kDevice,
                      std::span(c.hashes).subspan(i, n));
      removed_events += static_cast<int64_t>(n);
    }
  }
  const double removed_s = ThreadCpuSeconds() - t0;
  t0 = ThreadCpuSeconds();
  indexer.RemoveWorker(0);
  const double remove_worker_s = ThreadCpuSeconds() - t0;

  // --- route ---------------------------------------------------------------------------------
  auto router_or = tr::Router::Create(tr::RouterOptions{.block_size = block_size, .seed = 5});
  auto& router = **router_or;
  std::vector<tandem::WorkerId> ids;
  for (int w = 0; w < workers; ++w) {
    ids.push_back(*router.AddWorker("w" + std::to_string(w)));
    router.SetUp(ids.back(), true);
    router.UpdateLoad(ids.back(),
                      tr::LoadReport{.active_blocks = static_cast<int>(rng() % 4000),
                                     .queued_prefill_tokens = static_cast<int64_t>(rng() % 8192)});
  }
  std::vector<uint64_t> next_id(workers, 1);
  for (const Conversation& c : conversations) {
    for (size_t i = 0; i < c.hashes.size(); i += event_blocks) {
      const size_t n = std::min<size_t>(event_blocks, c.hashes.size() - i);
      (void)router.ApplyKvEvent(
          ids[c.worker], tr::KvEventRecord{.id = next_id[c.worker]++,
                                           .kind = tandem::KvEvent::Kind::kStored,
                                           .tier = tandem::KvTier::kDevice,
                                           .block_hashes = std::span(c.hashes).subspan(i, n)});
    }
  }
  // The prompts: a quarter continue a conversation whole, a quarter share half of one, half are
  // new conversations on a known system prompt.
  std::vector<std::vector<BlockHash>> prompts;
  std::vector<std::vector<int32_t>> prompt_token_lists;
  for (int i = 0; i < 512; ++i) {
    std::vector<int32_t> tokens;
    const int kind = i % 4;
    if (kind <= 1) {
      const Conversation& c = conversations[rng() % conversations.size()];
      tokens = c.tokens;
      if (kind == 1) {
        tokens.resize(tokens.size() / 2);
        const auto tail = random_tokens(c.tokens.size() - tokens.size());
        tokens.insert(tokens.end(), tail.begin(), tail.end());
      }
    } else {
      tokens = systems[rng() % systems.size()];
      const auto tail = random_tokens(static_cast<size_t>(prompt_tokens) - tokens.size());
      tokens.insert(tokens.end(), tail.begin(), tail.end());
    }
    prompts.push_back(tandem::HashBlocks(tokens, block_size, seed));
    prompt_token_lists.push_back(std::move(tokens));
  }
  std::vector<double> route_us, hash_us;
  std::vector<double> route_us_by_kind[4];
  route_us.reserve(routes);
  int64_t overlap_blocks = 0;
  for (int i = 0; i < routes; ++i) {
    const auto& hashes = prompts[i % prompts.size()];
    const auto start = std::chrono::steady_clock::now();
    auto plan =
        router.Route(tr::RouteRequest{.block_hashes = hashes, .prompt_tokens = prompt_tokens});
    const auto end = std::chrono::steady_clock::now();
    route_us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
    route_us_by_kind[(i % prompts.size()) % 4].push_back(route_us.back());
    overlap_blocks += plan->overlap().blocks();
  }
  for (int i = 0; i < 2000; ++i) {
    const auto& tokens = prompt_token_lists[i % prompt_token_lists.size()];
    const auto start = std::chrono::steady_clock::now();
    auto h = tandem::HashBlocks(tokens, block_size, seed);
    const auto end = std::chrono::steady_clock::now();
    hash_us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
  }

  const double stored_rate = block_events / stored_s;
  const double removed_rate = removed_events / removed_s;
  nlohmann::json j = {
      {"config",
       {{"workers", workers},
        {"blocks", blocks},
        {"prompt_tokens", prompt_tokens},
        {"block_size", block_size},
        {"system_prompts", system_prompts},
        {"system_blocks", system_blocks},
        {"event_blocks", event_blocks},
        {"routes", routes}}},
      {"indexer",
       {{"distinct_blocks", distinct},
        {"entries", entries},
        {"conversations", conversations.size()}}},
      {"apply",
       {{"stored_block_events_per_s", stored_rate},
        {"removed_block_events_per_s", removed_rate},
        {"remove_worker_ms", remove_worker_s * 1e3}}},
      {"route",
       {{"p50_us", Percentile(route_us, 50)},
        {"p90_us", Percentile(route_us, 90)},
        {"p99_us", Percentile(route_us, 99)},
        {"max_us", *std::max_element(route_us.begin(), route_us.end())},
        {"mean_overlap_blocks", static_cast<double>(overlap_blocks) / routes}}},
      {"hash_prompt", {{"p50_us", Percentile(hash_us, 50)}, {"p99_us", Percentile(hash_us, 99)}}},
      {"targets",
       {{"block_events_per_s", 5e6},
        {"route_p99_us", 20.0},
        {"dynamo_reported_route_p99_us", 10.0}}}};
  std::printf("bench_router: %d workers, %zu blocks held (%zu distinct), %d-token prompts\n",
              workers, entries, distinct, prompt_tokens);
  std::printf("%-34s %14s %14s\n", "", "measured", "target");
  std::printf("%-34s %14.2fM %13.1fM\n", "Stored block events/s (1 core)", stored_rate / 1e6, 5.0);
  std::printf("%-34s %14.2fM %14s\n", "Removed block events/s (1 core)", removed_rate / 1e6, "");
  std::printf("%-34s %13.1fms %14s\n", "drop one worker's entries", remove_worker_s * 1e3, "");
  std::printf("%-34s %13.2fus %14s\n", "Route p50", Percentile(route_us, 50), "");
  std::printf("%-34s %13.2fus %13.1fus\n", "Route p99", Percentile(route_us, 99), 20.0);
  std::printf("%-34s %13.2fus %14s\n", "Route max",
              *std::max_element(route_us.begin(), route_us.end()), "");
  const char* kind_names[3] = {"Route p99, a whole conversation", "Route p99, half a conversation",
                               "Route p99, a new conversation"};
  for (int k = 0; k < 3; ++k) {
    std::vector<double> v = route_us_by_kind[k];
    if (k == 2) v.insert(v.end(), route_us_by_kind[3].begin(), route_us_by_kind[3].end());
    j["route"]["by_prompt"][kind_names[k]] = {{"p50_us", Percentile(v, 50)},
                                              {"p99_us", Percentile(v, 99)}};
    std::printf("%-34s %13.2fus %14s\n", kind_names[k], Percentile(v, 99), "");
  }
  std::printf("%-34s %14.1f %14s\n", "mean overlap of the chosen worker",
              static_cast<double>(overlap_blocks) / routes, "blocks");
  std::printf("%-34s %13.2fus %14s\n", "hash an 8k-token prompt p50", Percentile(hash_us, 50),
              "(frontend)");
  std::ofstream(json_out) << j.dump(2) << "\n";
  std::printf("wrote %s\n", json_out.c_str());
  return 0;
}
