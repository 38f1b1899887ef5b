// Where model weights come from: a Hugging Face checkpoint (safetensors, possibly sharded) or a
// seeded random generator of the same tensors. Backends ask for tensors by their HF names
// ("model.layers.0.self_attn.q_proj.weight") and convert to their own precision.
//
// Thread safety: Find() may be called from several threads at once.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/model_config.h"
#include "model/tensor.h"
#include "tandem/status.h"

namespace tandem::model {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // The tensor `name`, checked against `expected_shape`: a missing tensor is NotFound, a shape
  // mismatch InvalidArgument; both messages name the tensor and the file it came from.
  virtual StatusOr<TensorView> Find(std::string_view name,
                                    std::span<const int64_t> expected_shape) const = 0;
  virtual bool Contains(std::string_view name) const = 0;

  // For a generated tensor, how RandomWeights generates it (so a backend can generate the same
  // values where it stores them instead of converting a host copy); nullopt for a checkpoint's.
  struct RandomRecipe {
    uint64_t key = 0;  // mix(seed ^ fnv(name)), see RandomWeights for the element formula
    float scale = 0.0f;
    float offset = 0.0f;  // value = offset + scale * u
  };
  virtual std::optional<RandomRecipe> Recipe(std::string_view /*name*/) const {
    return std::nullopt;
  }

  // What identifies these weights, never a path (ARCHITECTURE §3 "Block hash"): for a checkpoint,
  // each file's name, size and safetensors header (hashed); for random weights, the seed. Empty
  // when unknown.
  virtual std::string Identity() const { return {}; }
};

// Opens DIR/model.safetensors or DIR/model.safetensors.index.json (and its shards), memory-mapped.
// Fails with a message naming the file for a missing, truncated or malformed file.
StatusOr<std::unique_ptr<WeightSource>> OpenCheckpoint(const std::filesystem::path& model_dir);

// Every tensor of `config`, drawn from a counter-based generator keyed by `seed` and the tensor's
// name: the same (config, seed) gives the same weights on every backend and machine. Matrices are
// uniform with standard deviation 0.02; norm weights are 1 + uniform noise; biases are small.
// Never zeros.
//
// Exactly: with mix = splitmix64's output function and fnv = 64-bit FNV-1a of the name,
// key = mix(seed ^ fnv(name)); element i (row-major) takes k = mix(key + (i + 1) *
// 0x9e3779b97f4a7c15) >> 40 and u = (2k + 1 - 2^24) / 2^24, in (-1, 1) and never 0; the value is
// 0.02 * sqrt(3) * u for matrices and embeddings, 1 + 0.1 * u for *norm.weight, 0.02 * u for
// biases, as fp32. Tensors are F32, generated on their first Find and kept; lm_head.weight exists
// only when embeddings are untied, as in ExpectedTensors. `config` must pass Validate() (checked).
std::unique_ptr<WeightSource> RandomWeights(const ModelConfig& config, uint64_t seed);

// HF tensor names and shapes of a Llama-family model (what a checkpoint must hold).
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config);

}  // namespace tandem::model
