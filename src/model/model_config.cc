#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <system_error>

#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/json_fields.h"
#include "model/rope_config.h"

namespace tandem::model {
namespace {

using json = nlohmann::json;

// What differs between the supported model types. Defaults are transformers' config-class
// defaults, so that a config.json that omits a field means here what it means there.
struct ModelTypeTraits {
  std::string_view name;
  int64_t default_max_position_embeddings;
};
constexpr ModelTypeTraits kModelTypes[] = {
    {"llama", 2048},
    {"mistral", 4096 * 32},
    {"qwen2", 32768},
};

const ModelTypeTraits* FindModelType(std::string_view name) {
  for (const ModelTypeTraits& traits : kModelTypes) {
    if (traits.name == name) return &traits;
  }
  return nullptr;
}

std::string SupportedModelTypes() {
  std::string out;
  for (const ModelTypeTraits& traits : kModelTypes) {
    if (!out.empty()) out += ", ";
    out += traits.name;
  }
  return out;
}

Status Positive(int64_t value, std::string_view field) {
  if (value > 0) return OkStatus();
  return InvalidArgumentError("field '" + std::string(field) +
                              "' must be a positive integer (got " + std::to_string(value) + ")");
}

// Bias flags. llama's attention_bias covers all four attention projections; qwen2 always has
// q/k/v bias and never o_proj bias whatever the file says; mistral has none.
Status ParseBiases(const JsonFields& top, ModelConfig* config) {
  if (config->model_type == "qwen2") {
    config->attention_bias = true;
    config->o_proj_bias = false;
    config->mlp_bias = false;
    return OkStatus();
  }
  if (config->model_type == "llama") {
    TANDEM_ASSIGN_OR_RETURN(std::optional<bool> attention_bias, top.OptionalBool("attention_bias"));
    TANDEM_ASSIGN_OR_RETURN(std::optional<bool> mlp_bias, top.OptionalBool("mlp_bias"));
    config->attention_bias = attention_bias.value_or(false);
    config->o_proj_bias = config->attention_bias;
    config->mlp_bias = mlp_bias.value_or(false);
    return OkStatus();
  }
  config->attention_bias = false;
  config->o_proj_bias = false;
  config->mlp_bias = false;
  return OkStatus();
}

// qwen2: layers at index >= max_window_layers use the sliding window (transformers' rule, also
// spelled out per layer by `layer_types` in newer files). A model that mixes both kinds is refused
// rather than run with the wrong attention on some layers.
Status ParseQwen2SlidingWindow(const JsonFields& top, ModelConfig* config) {
  TANDEM_ASSIGN_OR_RETURN(std::optional<bool> use_sliding_window,
                          top.OptionalBool("use_sliding_window"));
  if (!use_sliding_window.value_or(false)) return OkStatus();
  // Absent: transformers' default of 4096. Null: no window.
  std::optional<int> window = 4096;
  if (top.Contains("sliding_window")) {
    TANDEM_ASSIGN_OR_RETURN(window, top.OptionalPositiveInt("sliding_window"));
  }
  if (!window.has_value()) return OkStatus();

  const int layers = config->num_hidden_layers;
  int sliding_layers = 0;
  if (const json* layer_types = top.Find("layer_types")) {
    if (!layer_types->is_array() || layer_types->size() != static_cast<size_t>(layers)) {
      return top.Error("layer_types", "must be a list of " + std::to_string(layers) +
                                          " layer types (one per hidden layer)");
    }
    for (const json& type : *layer_types) {
      if (type == "sliding_attention") {
        ++sliding_layers;
      } else if (type != "full_attention") {
        return top.Error("layer_types", "has unsupported value " + QuoteJsonForMessage(type) +
                                            " (supported: full_attention, sliding_attention)");
      }
    }
  } else {
    TANDEM_ASSIGN_OR_RETURN(std::optional<int64_t> max_window_layers,
                            top.OptionalInt("max_window_layers"));
    const int64_t first_sliding = max_window_layers.value_or(28);
    sliding_layers = static_cast<int>(std::clamp<int64_t>(
        static_cast<int64_t>(layers) - std::max<int64_t>(first_sliding, 0), 0, layers));
  }
  if (sliding_layers == 0) return OkStatus();
  if (sliding_layers != layers) {
    return top.Error(top.Has("layer_types") ? "layer_types" : "max_window_layers",
                     "gives " + std::to_string(sliding_layers) + " of " + std::to_string(layers) +
                         " layers a sliding window; mixing sliding-window and full-attention "
                         "layers is not supported");
  }
  config->sliding_window = *window;
  return OkStatus();
}

Status ParseSlidingWindow(const JsonFields& top, ModelConfig* config) {
  config->sliding_window.reset();
  if (config->model_type == "qwen2") return ParseQwen2SlidingWindow(top, config);
  if (config->model_type == "mistral") {
    // transformers' MistralConfig defaults to 4096 when the key is absent; null means none
    // (Mistral 7B v0.2 and later).
    if (!top.Contains("sliding_window")) {
      config->sliding_window = 4096;
      return OkStatus();
    }
    TANDEM_ASSIGN_OR_RETURN(config->sliding_window, top.OptionalPositiveInt("sliding_window"));
  }
  return OkStatus();
}

StatusOr<std::optional<int32_t>> ParseTokenId(const JsonFields& top, std::string_view key) {
  TANDEM_ASSIGN_OR_RETURN(std::vector<int32_t> ids, top.TokenIds(key));
  if (ids.empty()) return std::optional<int32_t>();
  if (ids.size() > 1 || top.Find(key)->is_array()) {
    return top.Error(key, "must be a single token id");
  }
  return std::optional<int32_t>(ids[0]);
}

void AppendField(std::string* out, std::string_view name, std::string_view value) {
  out->append(";");
  out->append(name);
  out->append("=");
  out->append(value);
}

}  // namespace

StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source) {
  TANDEM_ASSIGN_OR_RETURN(json root, ParseJsonObject(json_text, source));
  const JsonFields top(root, source);
  ModelConfig config;

  TANDEM_ASSIGN_OR_RETURN(std::optional<std::string> model_type, top.OptionalString("model_type"));
  if (!model_type.has_value()) return top.Error("model_type", "is missing");
  const ModelTypeTraits* traits = FindModelType(*model_type);
  if (traits == nullptr) {
    return top.Error("model_type", "has unsupported value " + QuoteForMessage(*model_type) +
                                       " (supported: " + SupportedModelTypes() + ")");
  }
  config.model_type = *model_type;

  TANDEM_ASSIGN_OR_RETURN(config.vocab_size, top.RequiredPositiveInt("vocab_size"));
  TANDEM_ASSIGN_OR_RETURN(config.hidden_size, top.RequiredPositiveInt("hidden_size"));
  TANDEM_ASSIGN_OR_RETURN(config.intermediate_size, top.RequiredPositiveInt("intermediate_size"));
  TANDEM_ASSIGN_OR_RETURN(config.num_hidden_layers, top.RequiredPositiveInt("num_hidden_layers"));
  TANDEM_ASSIGN_OR_RETURN(config.num_attention_heads,
                          top.RequiredPositiveInt("num_attention_heads"));
  TANDEM_ASSIGN_OR_RETURN(std::optional<int> kv_heads,
                          top.OptionalPositiveInt("num_key_value_heads"));
  config.num_key_value_heads = kv_heads.value_or(config.num_attention_heads);
  if (config.num_attention_heads % config.num_key_value_heads != 0) {
    return top.Error("num_key_value_heads", "(" + std::to_string(config.num_key_value_heads) +
                                                ") must divide num_attention_heads (" +
                                                std::to_string(config.num_attention_heads) + ")");
  }
  TANDEM_ASSIGN_OR_RETURN(std::optional<int> head_dim, top.OptionalPositiveInt("head_dim"));
  if (head_dim.has_value()) {
    config.head_dim = *head_dim;
  } else if (config.hidden_size % config.num_attention_heads != 0) {
    return top.Error("hidden_size", "(" + std::to_string(config.hidden_size) +
                                        ") is not a multiple of num_attention_heads (" +
                                        std::to_string(config.num_attention_heads) +
                                        ") and head_dim is not given");
  } else {
    config.head_dim = config.hidden_size / config.num_attention_heads;
  }

  TANDEM_ASSIGN_OR_RETURN(std::optional<int64_t> max_positions,
                          top.OptionalInt("max_position_embeddings"));
  config.max_position_embeddings = max_positions.value_or(traits->default_max_position_embeddings);
  if (config.max_position_embeddings <= 0) {
    return top.Error(
        "max_position_embeddings",
        "must be a positive integer (got " + std::to_string(config.max_position_embeddings) + ")");
  }

  TANDEM_ASSIGN_OR_RETURN(std::optional<double> eps, top.OptionalDouble("rms_norm_eps"));
  config.rms_norm_eps = eps.value_or(1e-6);
  if (!std::isfinite(config.rms_norm_eps) || config.rms_norm_eps <= 0) {
    return top.Error("rms_norm_eps",
                     "must be a positive number (got " + FormatDouble(config.rms_norm_eps) + ")");
  }

  TANDEM_RETURN_IF_ERROR(ParseBiases(top, &config));
  TANDEM_ASSIGN_OR_RETURN(std::optional<bool> tied, top.OptionalBool("tie_word_embeddings"));
  config.tie_word_embeddings = tied.value_or(false);

  TANDEM_ASSIGN_OR_RETURN(std::optional<std::string> act, top.OptionalString("hidden_act"));
  // transformers maps "swish" to the same SiLU function.
  if (act.has_value() && *act != "silu" && *act != "swish") {
    return top.Error("hidden_act",
                     "has unsupported value " + QuoteForMessage(*act) + " (supported: silu)");
  }
  config.hidden_act = "silu";

  TANDEM_RETURN_IF_ERROR(ParseSlidingWindow(top, &config));
  TANDEM_RETURN_IF_ERROR(ParseRopeConfig(top, config.max_position_embeddings, &config.rope));

  // transformers 5 renamed torch_dtype to dtype.
  const std::string_view dtype_key = top.Has("dtype") ? "dtype" : "torch_dtype";
  TANDEM_ASSIGN_OR_RETURN(std::optional<std::string> dtype, top.OptionalString(dtype_key));
  config.torch_dtype = dtype.value_or("");

  TANDEM_ASSIGN_OR_RETURN(config.bos_token_id, ParseTokenId(top, "bos_token_id"));
  TANDEM_ASSIGN_OR_RETURN(config.eos_token_ids, top.TokenIds("eos_token_id"));

  TANDEM_RETURN_IF_ERROR(config.Validate().WithContext(source));
  return config;
}

StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& model_dir) {
  const std::filesystem::path config_path = model_dir / "config.json";
  TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
  TANDEM_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(text, config_path.string()));

  // generation_config.json is optional; when it names eos ids they are the ones generation stops
  // on (Llama 3 Instruct adds <|eot_id|> there).
  const std::filesystem::path generation_path = model_dir / "generation_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(generation_path, ec)) return config;
  TANDEM_ASSIGN_OR_RETURN(std::string generation_text, ReadFileToString(generation_path));
  const std::string generation_source = generation_path.string();
  TANDEM_ASSIGN_OR_RETURN(json generation, ParseJsonObject(generation_text, generation_source));
  const JsonFields fields(generation, generation_source);
  if (fields.Has("eos_token_id")) {
    TANDEM_ASSIGN_OR_RETURN(config.eos_token_ids, fields.TokenIds("eos_token_id"));
  }
  return config;
}

StatusOr<ModelConfig> BuiltinModelConfig(std::string_view name) {
  ModelConfig config;
  config.model_type = "llama";
  config.rms_norm_eps = 1e-5;
  config.bos_token_id = 1;
  config.eos_token_ids = {2};
  config.torch_dtype = "float32";
  if (name == "demo") {
    config.vocab_size = 512;
    config.hidden_size = 128;
    config.intermediate_size = 352;
    config.num_hidden_layers = 4;
    config.num_attention_heads = 4;
    config.num_key_value_heads = 2;
    config.max_position_embeddings = 2048;
    config.rope.theta = 10000.0;
  } else if (name == "llama-100m") {
    config.vocab_size = 32000;
    config.hidden_size = 768;
    config.intermediate_size = 2048;
    config.num_hidden_layers = 12;
    config.num_attention_heads = 12;
    config.num_key_value_heads = 4;
    config.max_position_embeddings = 4096;
    config.rope.theta = 500000.0;
    config.torch_dtype = "bfloat16";
  } else if (name == "llama-3.1-8b" || name == "llama-3.2-1b") {
    // The shapes of Meta's checkpoints (their config.json), for benchmarks with random weights.
    const bool big = name == "llama-3.1-8b";
    config.vocab_size = 128256;
    config.hidden_size = big ? 4096 : 2048;
    config.intermediate_size = big ? 14336 : 8192;
    config.num_hidden_layers = big ? 32 : 16;
    config.num_attention_heads = 32;
    config.num_key_value_heads = 8;
    config.max_position_embeddings = 131072;
    config.bos_token_id = 128000;
    config.eos_token_ids = {128001, 128008, 128009};
    config.rope.theta = 500000.0;
    config.rope.type = RopeType::kLlama3;
    config.rope.factor = big ? 8.0 : 32.0;
    config.rope.low_freq_factor = 1.0;
    config.rope.high_freq_factor = 4.0;
    config.rope.original_max_position_embeddings = 8192;
    config.torch_dtype = "bfloat16";
  } else {
    return NotFoundError("unknown built-in model config " + QuoteForMessage(name) +
                         " (valid: demo, llama-100m, llama-3.1-8b, llama-3.2-1b)");
  }
  config.head_dim = config.hidden_size / config.num_attention_heads;
  config.tie_word_embeddings = name == "llama-3.2-1b";
  if (config.rope.original_max_position_embeddings == 0) {
    config.rope.original_max_position_embeddings = config.max_position_embeddings;
  }
  TANDEM_RETURN_IF_ERROR(config.Validate());
  return config;
}

Status ModelConfig::Validate() const {
  if (FindModelType(model_type) == nullptr) {
    return InvalidArgumentError("field 'model_type' has unsupported value " +
                                QuoteForMessage(model_type) +
                                " (supported: " + SupportedModelTypes() + ")");
  }
  TANDEM_RETURN_IF_ERROR(Positive(vocab_size, "vocab_size"));
  TANDEM_RETURN_IF_ERROR(Positive(hidden_size, "hidden_size"));
  TANDEM_RETURN_IF_ERROR(Positive(intermediate_size, "intermediate_size"));
  TANDEM_RETURN_IF_ERROR(Positive(num_hidden_layers, "num_hidden_layers"));
  TANDEM_RETURN_IF_ERROR(Positive(num_attention_heads, "num_attention_heads"));
  TANDEM_RETURN_IF_ERROR(Positive(num_key_value_heads, "num_key_value_heads"));
  TANDEM_RETURN_IF_ERROR(Positive(head_dim, "head_dim"));
  TANDEM_RETURN_IF_ERROR(Positive(max_position_embeddings, "max_position_embeddings"));
  if (num_attention_heads % num_key_value_heads != 0) {
    return InvalidArgumentError(
        "field 'num_key_value_heads' (" + std::to_string(num_key_value_heads) +
        ") must divide num_attention_heads (" + std::to_string(num_attention_heads) + ")");
  }
  // Rotary embeddings rotate pairs of dimensions.
  if (head_dim % 2 != 0) {
    return InvalidArgumentError("field 'head_dim' (" + std::to_string(head_dim) +
                                ") must be even for rotary embeddings");
  }
  // Projection shapes are products of these; keep them within int64 comfortably.
  if (static_cast<int64_t>(num_attention_heads) * head_dim > std::numeric_limits<int32_t>::max()) {
    return InvalidArgumentError("field 'head_dim' (" + std::to_string(head_dim) +
                                ") times num_attention_heads is too large");
  }
  if (!std::isfinite(rms_norm_eps) || rms_norm_eps <= 0) {
    return InvalidArgumentError("field 'rms_norm_eps' must be a positive number (got " +
                                FormatDouble(rms_norm_eps) + ")");
  }
  if (hidden_act != "silu") {
    return InvalidArgumentError("field 'hidden_act' has unsupported value " +
                                QuoteForMessage(hidden_act) + " (supported: silu)");
  }
  if (o_proj_bias && !attention_bias) {
    return InvalidArgumentError("field 'attention_bias': o_proj bias requires q/k/v bias");
  }
  if (sliding_window.has_value() && *sliding_window <= 0) {
    return InvalidArgumentError("field 'sliding_window' must be a positive integer (got " +
                                std::to_string(*sliding_window) + ")");
  }
  TANDEM_RETURN_IF_ERROR(CheckRopeConfig(rope, "rope_theta", "rope_scaling."));
  if (bos_token_id.has_value() && *bos_token_id < 0) {
    return InvalidArgumentError("field 'bos_token_id' must be a non-negative token id (got " +
                                std::to_string(*bos_token_id) + ")");
  }
  for (const int32_t id : eos_token_ids) {
    if (id < 0) {
      return InvalidArgumentError("field 'eos_token_id' must hold non-negative token ids (got " +
                                  std::to_string(id) + ")");
    }
  }
  return OkStatus();
}

std::string ModelConfig::Identity() const {
  // Hashed into every block hash: changing this format invalidates every cached block, so add
  // fields only at the end.
  std::string out = model_type;
  AppendField(&out, "vocab", std::to_string(vocab_size));
  AppendField(&out, "hidden", std::to_string(hidden_size));
  AppendField(&out, "intermediate", std::to_string(intermediate_size));
  AppendField(&out, "layers", std::to_string(num_hidden_layers));
  AppendField(&out, "heads", std::to_string(num_attention_heads));
  AppendField(&out, "kv_heads", std::to_string(num_key_value_heads));
  AppendField(&out, "head_dim", std::to_string(head_dim));
  AppendField(&out, "max_pos", std::to_string(max_position_embeddings));
  AppendField(&out, "eps", FormatDouble(rms_norm_eps));
  std::string biases =
      std::string(attention_bias ? "qkv" : "") + (o_proj_bias ? "o" : "") + (mlp_bias ? "mlp" : "");
  AppendField(&out, "bias", biases.empty() ? "none" : biases);
  AppendField(&out, "tied", tie_word_embeddings ? "1" : "0");
  AppendField(&out, "act", hidden_act);
  AppendField(&out, "window", sliding_window ? std::to_string(*sliding_window) : "none");
  AppendField(&out, "rope", RopeTypeName(rope.type));
  AppendField(&out, "theta", FormatDouble(rope.theta));
  AppendField(&out, "partial", FormatDouble(rope.partial_rotary_factor));
  // Only the parameters the rope type uses, so a stray key does not split the cache.
  if (rope.type != RopeType::kDefault) AppendField(&out, "factor", FormatDouble(rope.factor));
  if (rope.type == RopeType::kLlama3) {
    AppendField(&out, "low_freq", FormatDouble(rope.low_freq_factor));
    AppendField(&out, "high_freq", FormatDouble(rope.high_freq_factor));
  }
  if (rope.type == RopeType::kLlama3 || rope.type == RopeType::kYarn ||
      rope.type == RopeType::kDynamic) {
    AppendField(&out, "original_max_pos", std::to_string(rope.original_max_position_embeddings));
  }
  if (rope.type == RopeType::kYarn) {
    auto optional = [](const std::optional<double>& v) {
      return v ? FormatDouble(*v) : std::string("none");
    };
    AppendField(&out, "beta_fast", FormatDouble(rope.beta_fast));
    AppendField(&out, "beta_slow", FormatDouble(rope.beta_slow));
    AppendField(&out, "mscale", optional(rope.mscale));
    AppendField(&out, "mscale_all_dim", optional(rope.mscale_all_dim));
    AppendField(&out, "attention_factor", optional(rope.attention_factor));
    AppendField(&out, "truncate", rope.truncate ? "1" : "0");
  }
  return out;
}

}  // namespace tandem::model
