#include "engine/engine_factory.h"

#include <algorithm>
#include <functional>
#include <map>

#include "common/status_macros.h"
#include "engine/cpu/cpu_model_runner.h"
#include "engine/mock/mock_model_runner.h"
#include "engine/rope.h"
#ifdef TANDEM_HAVE_CUDA
#include "engine/cuda/cuda_model_runner.h"
#endif

namespace tandem::engine {
namespace {

using RunnerFactory = std::function<StatusOr<std::unique_ptr<ModelRunner>>(
    const model::ModelConfig&, const model::WeightSource&, const BackendOptions&)>;

// The pool size: options.num_blocks, or as many blocks of `per_block` bytes as kv_cache_bytes
// holds.
StatusOr<int> NumBlocks(const model::ModelConfig& config, const BackendOptions& options,
                        size_t per_block) {
  if (options.num_blocks > 0) return options.num_blocks;
  // Never more blocks than the longest sequence needs 64 times over: a tiny model must not
  // allocate the whole budget.
  const int64_t cap = 64 * ((MaxModelLen(config) + options.block_size - 1) / options.block_size);
  const int num_blocks =
      static_cast<int>(std::min<int64_t>(cap, options.kv_cache_bytes / per_block));
  if (num_blocks < 1) {
    return InvalidArgumentError("kv cache budget of " + std::to_string(options.kv_cache_bytes) +
                                " bytes holds no block of " + std::to_string(per_block) + " bytes");
  }
  return num_blocks;
}

StatusOr<std::unique_ptr<ModelRunner>> CreateCpuRunner(const model::ModelConfig& config,
                                                       const model::WeightSource& weights,
                                                       const BackendOptions& options) {
  cpu::CpuRunnerOptions cpu_options;
  cpu_options.block_size = options.block_size;
  TANDEM_ASSIGN_OR_RETURN(
      cpu_options.num_blocks,
      NumBlocks(config, options, cpu::CpuModelRunner::KvBytesPerBlock(config, options.block_size)));
  TANDEM_ASSIGN_OR_RETURN(auto runner, cpu::CpuModelRunner::Create(config, weights, cpu_options));
  return std::unique_ptr<ModelRunner>(std::move(runner));
}

StatusOr<std::unique_ptr<ModelRunner>> CreateMockRunner(const model::ModelConfig& config,
                                                        const model::WeightSource& /*weights*/,
                                                        const BackendOptions& options) {
  mock::MockRunnerOptions mock_options;
  mock_options.block_size = options.block_size;
  TANDEM_ASSIGN_OR_RETURN(mock_options.num_blocks, NumBlocks(config, options,
                                                             mock::MockModelRunner::KvBytesPerBlock(
                                                                 config, options.block_size)));
  if (!options.mock_profile.empty()) {
    TANDEM_ASSIGN_OR_RETURN(mock_options.profile, mock::LoadMockProfile(options.mock_profile));
  }
  mock_options.speedup = options.mock_speedup;
  mock_options.seed = options.mock_seed;
  TANDEM_ASSIGN_OR_RETURN(auto runner, mock::MockModelRunner::Create(config, mock_options));
  return std::unique_ptr<ModelRunner>(std::move(runner));
}

#ifdef TANDEM_HAVE_CUDA
StatusOr<std::unique_ptr<ModelRunner>> CreateCudaRunner(const model::ModelConfig& config,
                                                        const model::WeightSource& weights,
                                                        const BackendOptions& options) {
  cuda::CudaRunnerOptions cuda_options;
  cuda_options.block_size = options.block_size;
  TANDEM_ASSIGN_OR_RETURN(cuda_options.num_blocks, NumBlocks(config, options,
                                                             cuda::CudaModelRunner::KvBytesPerBlock(
                                                                 config, options.block_size)));
  TANDEM_ASSIGN_OR_RETURN(auto runner,
                          cuda::CudaModelRunner::Create(config, weights, cuda_options));
  return std::unique_ptr<ModelRunner>(std::move(runner));
}
#endif

const std::map<std::string, RunnerFactory>& Registry() {
  static const auto* registry = new std::map<std::string, RunnerFactory>{
      {"cpu", CreateCpuRunner},
      {"mock", CreateMockRunner},
#ifdef TANDEM_HAVE_CUDA
      {"cuda", CreateCudaRunner},
#endif
  };
  return *registry;
}

}  // namespace

StatusOr<LoadedModel> LoadModel(const ModelSpec& spec) {
  LoadedModel loaded;
  constexpr std::string_view kBuiltin = "builtin:";
  if (spec.model.starts_with(kBuiltin)) {
    TANDEM_ASSIGN_OR_RETURN(loaded.config,
                            model::BuiltinModelConfig(spec.model.substr(kBuiltin.size())));
    loaded.weights = model::RandomWeights(loaded.config, spec.weights_seed);
    return loaded;
  }
  TANDEM_ASSIGN_OR_RETURN(loaded.config, model::LoadModelConfig(spec.model));
  if (spec.random_weights) {
    loaded.weights = model::RandomWeights(loaded.config, spec.weights_seed);
  } else {
    TANDEM_ASSIGN_OR_RETURN(loaded.weights, model::OpenCheckpoint(spec.model));
  }
  return loaded;
}

std::vector<std::string> AvailableBackends() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : Registry()) names.push_back(name);
  return names;
}

StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const model::ModelConfig& config,
                                                         const model::WeightSource& weights,
                                                         const BackendOptions& options) {
  const auto& registry = Registry();
  auto it = registry.find(options.backend);
  if (it == registry.end()) {
    std::string names;
    for (const auto& name : AvailableBackends()) names += (names.empty() ? "" : ", ") + name;
    return InvalidArgumentError("unknown backend '" + options.backend + "' (available: " + names +
                                ")");
  }
  if (options.block_size < 1 || options.block_size > 1024) {
    return InvalidArgumentError("block size must be in [1, 1024]");
  }
  if (options.num_blocks < 0) return InvalidArgumentError("num_blocks must be >= 0");
  return it->second(config, weights, options);
}

StatusOr<std::unique_ptr<LlmEngine>> CreateEngine(const ModelSpec& model,
                                                  const BackendOptions& backend,
                                                  const EngineOptions& engine) {
  ModelSpec spec = model;
  // The mock computes nothing: seeded random weights stand in, and are never generated.
  if (backend.backend == "mock") spec.random_weights = true;
  TANDEM_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModel(spec));
  TANDEM_ASSIGN_OR_RETURN(auto runner, CreateModelRunner(loaded.config, *loaded.weights, backend));
  EngineOptions options = engine;
  // The same model from another directory (or machine) hashes its blocks the same way.
  if (options.model_identity.empty()) {
    options.model_identity = loaded.config.Identity() + "|weights:" + loaded.weights->Identity();
  }
  return LlmEngine::Create(std::move(runner), options);
}

}  // namespace tandem::engine
