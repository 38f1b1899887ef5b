// The architecture of a Llama-family model, read from a Hugging Face config.json (model types
// llama, mistral, qwen2 and their variants) and generation_config.json.
//
// Thread safety: value type.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem::model {

enum class RopeType { kDefault, kLinear, kDynamic, kLlama3, kYarn };
std::string_view RopeTypeName(RopeType type);

struct RopeConfig {
  RopeType type = RopeType::kDefault;
  double theta = 10000.0;
  // linear / dynamic / llama3 / yarn.
  double factor = 1.0;
  // llama3.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // llama3 / yarn / dynamic: the context the model was trained with before scaling. Defaults to
  // max_position_embeddings when the config does not give it.
  int64_t original_max_position_embeddings = 0;
  // yarn.
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  std::optional<double> mscale;
  std::optional<double> mscale_all_dim;
  std::optional<double> attention_factor;
  bool truncate = true;  // yarn: round the correction range to whole dimensions.
  // Fraction of head_dim that is rotated (1 for every supported model).
  double partial_rotary_factor = 1.0;
};

struct ModelConfig {
  std::string model_type;  // "llama", "mistral" or "qwen2".
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;  // Explicit in config.json, else hidden_size / num_attention_heads.
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool attention_bias = false;  // q/k/v (and o for llama's attention_bias) projections have bias.
  bool o_proj_bias = false;
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
  std::string hidden_act = "silu";
  // Tokens further back than this are not attended to (Mistral v0.1); nullopt = full attention.
  std::optional<int> sliding_window;
  RopeConfig rope;
  std::string torch_dtype;  // As written ("bfloat16", "float16", "float32"), may be empty.
  std::optional<int32_t> bos_token_id;
  // From generation_config.json when present, else config.json.
  std::vector<int32_t> eos_token_ids;

  // Identity used to seed the block hash: model type and shapes (two checkpoints of the same
  // shape share it; a served model adds its name).
  std::string Identity() const;

  // Checks the fields agree with one another (heads divide, sizes positive, ...).
  Status Validate() const;
};

// Parses config.json text. `source` names the file in error messages.
StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source);

// Reads DIR/config.json and, when present, DIR/generation_config.json (eos ids).
StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& model_dir);

// Small built-in configurations, for demos and benchmarks with --weights random:
// "demo" (a few MB) and "llama-100m" (~100M parameters).
StatusOr<ModelConfig> BuiltinModelConfig(std::string_view name);

}  // namespace tandem::model
