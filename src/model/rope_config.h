// Reading and checking the rotary position embedding (RoPE) part of a Hugging Face config.json.
// Two spellings exist: the classic top-level `rope_theta` plus `rope_scaling` (type under
// "rope_type" or legacy "type"), and transformers 5's `rope_parameters` object holding rope_type,
// rope_theta and the scaling keys together. Both produce the same RopeConfig.
//
// Internal to src/model (ParseModelConfig is the public entry point).
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string_view>

#include "model/json_fields.h"
#include "model/model_config.h"
#include "tandem/status.h"

namespace tandem::model {

// Fills `rope` from the top-level config object `top`. `max_position_embeddings` is the default of
// original_max_position_embeddings. Errors name the file and the field as spelled in the file
// ("rope_scaling.rope_type", "rope_parameters.factor", ...).
Status ParseRopeConfig(const JsonFields& top, int64_t max_position_embeddings, RopeConfig* rope);

// Checks a RopeConfig's values. `theta_field` and `params_prefix` are the field names used in the
// messages ("rope_theta" and "rope_scaling." for the classic spelling). Messages have no file name:
// the caller adds it.
Status CheckRopeConfig(const RopeConfig& rope, std::string_view theta_field,
                       std::string_view params_prefix);

}  // namespace tandem::model
