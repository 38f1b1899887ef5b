// Builds an engine from what a user names: a model (a Hugging Face checkpoint directory, or a
// built-in configuration), where its weights come from (the checkpoint, or seeded random), a
// backend by name, and the KV pool size. Shared by the CLI, the benchmarks and the workers.
//
// Thread safety: functions are reentrant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/llm_engine.h"
#include "engine/model_runner.h"
#include "model/model_config.h"
#include "model/weight_source.h"

namespace tandem::engine {

struct ModelSpec {
  // A checkpoint directory, or "builtin:<name>" for a built-in configuration (random weights).
  std::string model = "builtin:demo";
  // Instantiate the configuration with seeded random weights instead of reading the checkpoint.
  bool random_weights = false;
  uint64_t weights_seed = 0;  // Seed of the random weights.
};

struct LoadedModel {
  model::ModelConfig config;
  std::unique_ptr<model::WeightSource> weights;
};

StatusOr<LoadedModel> LoadModel(const ModelSpec& spec);

struct BackendOptions {
  std::string backend = "cpu";       // Registered backend name (AvailableBackends()).
  int block_size = 16;               // Tokens per KV block.
  int num_blocks = 0;                // KV blocks; 0 sizes the pool from kv_cache_bytes.
  size_t kv_cache_bytes = 1ull << 30;  // KV pool budget when num_blocks is 0.
  // The mock backend (engine/mock/): no memory is behind its pool, so the budget is virtual.
  std::string mock_profile;   // Timing model JSON (empty: Llama-3.1-8B on an H200).
  double mock_speedup = 1.0;  // Simulated time runs this many times faster than real time.
  uint64_t mock_seed = 0;     // Seed of its output tokens.
};

std::vector<std::string> AvailableBackends();

StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const model::ModelConfig& config,
                                                         const model::WeightSource& weights,
                                                         const BackendOptions& options);

// LoadModel + CreateModelRunner + LlmEngine::Create. The mock backend reads only the model's
// configuration (no weights: a directory with config.json is enough).
StatusOr<std::unique_ptr<LlmEngine>> CreateEngine(const ModelSpec& model,
                                                  const BackendOptions& backend,
                                                  const EngineOptions& engine);

}  // namespace tandem::engine
