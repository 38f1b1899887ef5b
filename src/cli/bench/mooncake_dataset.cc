// Mooncake traces: JSON lines {"timestamp": ms, "input_length": n, "output_length": m,
// "hash_ids": [...]}, one id per block of block_size prompt tokens.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "cli/bench/dataset.h"
#include "cli/bench/trace_lines.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace tandem::bench {
namespace {

using Json = nlohmann::json;

// `object[key]` as a non-negative integer, or an error naming the key.
StatusOr<int64_t> NonNegativeInteger(const Json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return InvalidArgumentError(std::string("missing \"") + key + "\"");
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    return InvalidArgumentError(std::string("\"") + key + "\" is not a non-negative integer");
  }
  return it->get<int64_t>();
}

StatusOr<RequestSpec> ParseLine(std::string_view line, int block_size) {
  const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgumentError("not valid JSON");
  if (!j.is_object()) return InvalidArgumentError("not a JSON object");
  RequestSpec spec;
  auto ts = j.find("timestamp");
  if (ts == j.end() || !ts->is_number() || !std::isfinite(ts->get<double>()) ||
      ts->get<double>() < 0) {
    return InvalidArgumentError("\"timestamp\" is missing or not a non-negative number (ms)");
  }
  spec.timestamp_s = ts->get<double>() / 1000.0;
  TANDEM_ASSIGN_OR_RETURN(const int64_t input, NonNegativeInteger(j, "input_length"));
  TANDEM_ASSIGN_OR_RETURN(const int64_t output, NonNegativeInteger(j, "output_length"));
  if (input < 1 || input > (1 << 30)) return InvalidArgumentError("\"input_length\" out of range");
  if (output < 1 || output > (1 << 30)) {
    return InvalidArgumentError("\"output_length\" out of range");
  }
  spec.input_len = static_cast<int>(input);
  spec.output_len = static_cast<int>(output);
  auto ids = j.find("hash_ids");
  if (ids == j.end() || !ids->is_array()) {
    return InvalidArgumentError("\"hash_ids\" is missing or not a list");
  }
  // Blocks past input_length would be cut anyway.
  const size_t used =
      std::min(ids->size(), static_cast<size_t>((input + block_size - 1) / block_size));
  spec.hash_ids.reserve(used);
  for (size_t i = 0; i < used; ++i) {
    if (!(*ids)[i].is_number_integer()) {
      return InvalidArgumentError("\"hash_ids\"[" + std::to_string(i) + "] is not an integer");
    }
    spec.hash_ids.push_back((*ids)[i].get<int64_t>());
  }
  return spec;
}

}  // namespace

StatusOr<Dataset> LoadMooncake(const std::string& path, int block_size) {
  TANDEM_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  Dataset dataset;
  dataset.kind = DatasetKind::kMooncake;
  dataset.has_timestamps = true;
  dataset.block_size = block_size;
  TANDEM_RETURN_IF_ERROR(ForEachTraceLine(text, [&](int number, std::string_view line) {
    StatusOr<RequestSpec> spec = ParseLine(line, block_size);
    if (!spec.ok()) {
      return spec.status().WithContext(path + ":" + std::to_string(number));
    }
    dataset.requests.push_back(std::move(spec).value());
    return OkStatus();
  }));
  if (!dataset.requests.empty()) {
    const double first = *dataset.requests.front().timestamp_s;
    for (RequestSpec& r : dataset.requests) r.timestamp_s = std::max(0.0, *r.timestamp_s - first);
  }
  return dataset;
}

}  // namespace tandem::bench
