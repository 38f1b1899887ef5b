#include "model/rope_config.h"

#include <cmath>
#include <optional>
#include <string>

#include "common/status_macros.h"

namespace tandem::model {
namespace {

using json = nlohmann::json;

struct RopeTypeSpelling {
  std::string_view name;
  RopeType type;
};
constexpr RopeTypeSpelling kRopeTypes[] = {
    {"default", RopeType::kDefault}, {"linear", RopeType::kLinear}, {"dynamic", RopeType::kDynamic},
    {"llama3", RopeType::kLlama3},   {"yarn", RopeType::kYarn},
};

std::string SupportedRopeTypes() {
  std::string out;
  for (const RopeTypeSpelling& spelling : kRopeTypes) {
    if (!out.empty()) out += ", ";
    out += spelling.name;
  }
  return out;
}

Status PositiveFinite(double value, std::string_view field) {
  if (std::isfinite(value) && value > 0) return OkStatus();
  return InvalidArgumentError("field '" + std::string(field) + "' must be a positive number (got " +
                              FormatDouble(value) + ")");
}

Status Finite(double value, std::string_view field) {
  if (std::isfinite(value)) return OkStatus();
  return InvalidArgumentError("field '" + std::string(field) + "' must be a finite number (got " +
                              FormatDouble(value) + ")");
}

Status CheckPartialRotaryFactor(double value, std::string_view field) {
  if (value == 1.0) return OkStatus();
  return InvalidArgumentError("field '" + std::string(field) +
                              "' must be 1.0 (partial rotary embeddings are not supported), got " +
                              FormatDouble(value));
}

// Reads the scaling keys of `params` (a rope_scaling or rope_parameters object) into `rope`.
Status ParseScalingKeys(const JsonFields& params, RopeConfig* rope) {
  // The type: "rope_type", or "type" in configs written before transformers 4.45.
  std::string_view type_key = params.Has("rope_type") ? "rope_type" : "type";
  TANDEM_ASSIGN_OR_RETURN(std::optional<std::string> type_name, params.OptionalString(type_key));
  if (!type_name.has_value()) {
    // Without a type only plain RoPE is unambiguous; a factor with no type says nothing of how
    // to apply it.
    if (params.Has("factor")) return params.Error("rope_type", "is missing");
    type_name = "default";
  }
  const RopeTypeSpelling* spelling = nullptr;
  for (const RopeTypeSpelling& candidate : kRopeTypes) {
    if (candidate.name == *type_name) spelling = &candidate;
  }
  if (spelling == nullptr) {
    return params.Error(type_key, "has unsupported value " + QuoteForMessage(*type_name) +
                                      " (supported: " + SupportedRopeTypes() + ")");
  }
  rope->type = spelling->type;

  TANDEM_ASSIGN_OR_RETURN(std::optional<double> factor, params.OptionalDouble("factor"));
  if (rope->type == RopeType::kDefault) {
    rope->factor = 1.0;  // transformers ignores a factor for plain RoPE.
  } else if (!factor.has_value()) {
    return params.Error("factor", "is missing (required by rope type '" + *type_name + "')");
  } else {
    rope->factor = *factor;
  }

  auto read_double = [&](std::string_view key, double* out) -> Status {
    TANDEM_ASSIGN_OR_RETURN(std::optional<double> value, params.OptionalDouble(key));
    if (value.has_value()) *out = *value;
    return OkStatus();
  };
  auto read_optional = [&](std::string_view key, std::optional<double>* out) -> Status {
    TANDEM_ASSIGN_OR_RETURN(*out, params.OptionalDouble(key));
    return OkStatus();
  };
  TANDEM_RETURN_IF_ERROR(read_double("low_freq_factor", &rope->low_freq_factor));
  TANDEM_RETURN_IF_ERROR(read_double("high_freq_factor", &rope->high_freq_factor));
  TANDEM_RETURN_IF_ERROR(read_double("beta_fast", &rope->beta_fast));
  TANDEM_RETURN_IF_ERROR(read_double("beta_slow", &rope->beta_slow));
  TANDEM_RETURN_IF_ERROR(read_optional("mscale", &rope->mscale));
  TANDEM_RETURN_IF_ERROR(read_optional("mscale_all_dim", &rope->mscale_all_dim));
  TANDEM_RETURN_IF_ERROR(read_optional("attention_factor", &rope->attention_factor));

  TANDEM_ASSIGN_OR_RETURN(std::optional<int64_t> original_max,
                          params.OptionalInt("original_max_position_embeddings"));
  if (original_max.has_value()) {
    if (*original_max <= 0) {
      return params.Error("original_max_position_embeddings",
                          "must be a positive integer (got " + std::to_string(*original_max) + ")");
    }
    rope->original_max_position_embeddings = *original_max;
  }
  TANDEM_ASSIGN_OR_RETURN(std::optional<bool> truncate, params.OptionalBool("truncate"));
  if (truncate.has_value()) rope->truncate = *truncate;
  return OkStatus();
}

}  // namespace

std::string_view RopeTypeName(RopeType type) {
  for (const RopeTypeSpelling& spelling : kRopeTypes) {
    if (spelling.type == type) return spelling.name;
  }
  return "unknown";
}

Status ParseRopeConfig(const JsonFields& top, int64_t max_position_embeddings, RopeConfig* rope) {
  *rope = RopeConfig{};
  rope->original_max_position_embeddings = max_position_embeddings;

  // transformers 5 writes rope_parameters; when a file has both spellings it is the newer one.
  const json* params = top.Find("rope_parameters");
  std::string prefix = "rope_parameters.";
  if (params == nullptr) {
    params = top.Find("rope_scaling");
    prefix = "rope_scaling.";
  }
  if (params != nullptr && !params->is_object()) {
    return top.Error(prefix.substr(0, prefix.size() - 1),
                     "must be an object, got " + std::string(JsonTypeName(*params)));
  }

  std::string theta_field = "rope_theta";
  TANDEM_ASSIGN_OR_RETURN(std::optional<double> theta, top.OptionalDouble("rope_theta"));
  if (theta.has_value()) rope->theta = *theta;
  std::string partial_field = "partial_rotary_factor";
  TANDEM_ASSIGN_OR_RETURN(std::optional<double> partial,
                          top.OptionalDouble("partial_rotary_factor"));
  if (partial.has_value()) rope->partial_rotary_factor = *partial;

  if (params != nullptr) {
    const JsonFields fields(*params, top.source(), prefix);
    // Models with several attention kinds (gemma3) nest one parameter set per layer type; none of
    // the supported models does, and guessing which set applies would be silently wrong.
    for (const auto& item : params->items()) {
      if (item.value().is_object()) {
        return fields.Error(item.key(),
                            "is a per-layer-type RoPE parameter set, which is not supported");
      }
    }
    TANDEM_ASSIGN_OR_RETURN(theta, fields.OptionalDouble("rope_theta"));
    if (theta.has_value()) {
      rope->theta = *theta;
      theta_field = fields.FieldName("rope_theta");
    }
    TANDEM_ASSIGN_OR_RETURN(partial, fields.OptionalDouble("partial_rotary_factor"));
    if (partial.has_value()) {
      rope->partial_rotary_factor = *partial;
      partial_field = fields.FieldName("partial_rotary_factor");
    }
    TANDEM_RETURN_IF_ERROR(ParseScalingKeys(fields, rope));
  }

  const std::string context(top.source());
  TANDEM_RETURN_IF_ERROR(
      CheckPartialRotaryFactor(rope->partial_rotary_factor, partial_field).WithContext(context));
  return CheckRopeConfig(*rope, theta_field, prefix).WithContext(context);
}

Status CheckRopeConfig(const RopeConfig& rope, std::string_view theta_field,
                       std::string_view params_prefix) {
  const std::string prefix(params_prefix);
  TANDEM_RETURN_IF_ERROR(PositiveFinite(rope.theta, theta_field));
  TANDEM_RETURN_IF_ERROR(
      CheckPartialRotaryFactor(rope.partial_rotary_factor, "partial_rotary_factor"));
  if (rope.original_max_position_embeddings <= 0) {
    return InvalidArgumentError("field '" + prefix +
                                "original_max_position_embeddings' must be a positive integer "
                                "(got " +
                                std::to_string(rope.original_max_position_embeddings) + ")");
  }
  if (rope.type == RopeType::kDefault) return OkStatus();
  TANDEM_RETURN_IF_ERROR(PositiveFinite(rope.factor, prefix + "factor"));
  if (rope.type == RopeType::kLlama3) {
    TANDEM_RETURN_IF_ERROR(PositiveFinite(rope.low_freq_factor, prefix + "low_freq_factor"));
    TANDEM_RETURN_IF_ERROR(PositiveFinite(rope.high_freq_factor, prefix + "high_freq_factor"));
    // The llama3 smoothing divides by (high - low).
    if (!(rope.high_freq_factor > rope.low_freq_factor)) {
      return InvalidArgumentError(
          "field '" + prefix + "high_freq_factor' (" + FormatDouble(rope.high_freq_factor) +
          ") must be greater than low_freq_factor (" + FormatDouble(rope.low_freq_factor) + ")");
    }
  }
  if (rope.type == RopeType::kYarn) {
    TANDEM_RETURN_IF_ERROR(PositiveFinite(rope.beta_fast, prefix + "beta_fast"));
    TANDEM_RETURN_IF_ERROR(PositiveFinite(rope.beta_slow, prefix + "beta_slow"));
    if (rope.mscale.has_value()) {
      TANDEM_RETURN_IF_ERROR(Finite(*rope.mscale, prefix + "mscale"));
    }
    if (rope.mscale_all_dim.has_value()) {
      TANDEM_RETURN_IF_ERROR(Finite(*rope.mscale_all_dim, prefix + "mscale_all_dim"));
    }
    if (rope.attention_factor.has_value()) {
      TANDEM_RETURN_IF_ERROR(PositiveFinite(*rope.attention_factor, prefix + "attention_factor"));
    }
  }
  return OkStatus();
}

}  // namespace tandem::model
