#include "engine/mock/timing_model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

#include "common/file_util.h"
#include "common/status_macros.h"

namespace tandem::engine::mock {

StatusOr<MockProfile> ParseMockProfile(const std::string& json_text) {
  const nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return InvalidArgumentError("mock profile: expected a JSON object");
  MockProfile p;
  const std::map<std::string, double*> fields = {
      {"prefill_fixed_ms", &p.prefill_fixed_ms},
      {"prefill_per_token_us", &p.prefill_per_token_us},
      {"prefill_per_token_context_ns", &p.prefill_per_token_context_ns},
      {"decode_fixed_ms", &p.decode_fixed_ms},
      {"decode_per_seq_us", &p.decode_per_seq_us},
      {"decode_per_context_token_ns", &p.decode_per_context_token_ns}};
  for (const auto& [key, value] : j.items()) {
    if (key == "name") {
      if (!value.is_string()) return InvalidArgumentError("mock profile: 'name' must be a string");
      p.name = value.get<std::string>();
      continue;
    }
    if (key == "source" || key.starts_with("_")) continue;
    auto it = fields.find(key);
    if (it == fields.end()) return InvalidArgumentError("mock profile: unknown key '" + key + "'");
    if (!value.is_number() || value.get<double>() < 0) {
      return InvalidArgumentError("mock profile: '" + key + "' must be a number >= 0, got " +
                                  value.dump());
    }
    *it->second = value.get<double>();
  }
  return p;
}

StatusOr<MockProfile> LoadMockProfile(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto profile = ParseMockProfile(text);
  if (!profile.ok()) return profile.status().WithContext(path);
  return profile;
}

StepShape ShapeOf(std::span<const SequenceStep> batch) {
  StepShape shape;
  for (const SequenceStep& s : batch) {
    const auto n = static_cast<int64_t>(s.tokens.size());
    if (n == 0) continue;
    if (n == 1) {
      ++shape.decode_seqs;
      shape.decode_context += s.start_pos + 1;
    } else {
      shape.prefill_tokens += n;
      // Σ_{i<n} (start + i + 1) = n·start + n(n+1)/2.
      shape.prefill_token_context +=
          static_cast<double>(n) * static_cast<double>(s.start_pos) + 0.5 * n * (n + 1);
    }
  }
  return shape;
}

double StepSeconds(const MockProfile& p, const StepShape& shape) {
  double fixed_ms = 0;
  if (shape.prefill_tokens > 0) fixed_ms = std::max(fixed_ms, p.prefill_fixed_ms);
  if (shape.decode_seqs > 0) fixed_ms = std::max(fixed_ms, p.decode_fixed_ms);
  return fixed_ms * 1e-3 + p.prefill_per_token_us * 1e-6 * shape.prefill_tokens +
         p.prefill_per_token_context_ns * 1e-9 * shape.prefill_token_context +
         p.decode_per_seq_us * 1e-6 * shape.decode_seqs +
         p.decode_per_context_token_ns * 1e-9 * shape.decode_context;
}

}  // namespace tandem::engine::mock
