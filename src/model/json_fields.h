// Exception-free JSON reading for the model loaders: parsing text into an object, and typed field
// access whose errors are one line naming the file and the field ("models/x/config.json: field
// 'hidden_size' must be an integer, got string").
//
// Internal to src/model. nlohmann::json is used only through calls that cannot throw (parse with
// allow_exceptions = false, type checks before every get<>).
//
// Thread safety: JsonFields is a read-only view of a json object it does not own; const methods
// may be called from any thread while the object outlives it.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem::model {

// Parses `text` as JSON whose top level must be an object. Errors (InvalidArgument) name `source`
// and, for a syntax error, the line and column.
StatusOr<nlohmann::json> ParseJsonObject(std::string_view text, std::string_view source);

// A JSON value quoted for an error message: strings in single quotes, control characters escaped,
// long values shortened; always one line.
std::string QuoteJsonForMessage(const nlohmann::json& value);
std::string QuoteForMessage(std::string_view text);

// The shortest text that reads back as `value` ("0.5", "1e-05", "500000").
std::string FormatDouble(double value);

// The JSON type name used in messages: "string", "integer", "number", "boolean", "array",
// "object", "null".
std::string_view JsonTypeName(const nlohmann::json& value);

// Typed access to the fields of one JSON object. `prefix` is prepended to field names in messages
// ("rope_scaling." gives "field 'rope_scaling.factor'"). A field that is present but null counts as
// absent, as Hugging Face configs write null for "not set".
class JsonFields {
 public:
  JsonFields(const nlohmann::json& object, std::string_view source, std::string prefix = "");

  // The value of `key`, or nullptr when absent or null.
  const nlohmann::json* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }
  // True when `key` is present, even with a null value.
  bool Contains(std::string_view key) const;

  // Integers: JSON integers, or floats holding an integer exactly (4096.0).
  StatusOr<std::optional<int64_t>> OptionalInt(std::string_view key) const;
  StatusOr<int64_t> RequiredInt(std::string_view key) const;
  // An integer in [1, 2^31 - 1]: sizes and counts.
  StatusOr<int> RequiredPositiveInt(std::string_view key) const;
  StatusOr<std::optional<int>> OptionalPositiveInt(std::string_view key) const;
  // Any JSON number.
  StatusOr<std::optional<double>> OptionalDouble(std::string_view key) const;
  StatusOr<std::optional<bool>> OptionalBool(std::string_view key) const;
  StatusOr<std::optional<std::string>> OptionalString(std::string_view key) const;
  // An integer or a list of integers (token ids); absent or null gives an empty list. Each id must
  // fit in int32 and be non-negative.
  StatusOr<std::vector<int32_t>> TokenIds(std::string_view key) const;

  // InvalidArgument "<source>: field '<prefix><key>' <what>".
  Status Error(std::string_view key, std::string_view what) const;
  // "<prefix><key>".
  std::string FieldName(std::string_view key) const;
  std::string_view source() const { return source_; }

 private:
  Status TypeError(std::string_view key, std::string_view expected,
                   const nlohmann::json& got) const;

  const nlohmann::json& object_;
  std::string source_;
  std::string prefix_;
};

}  // namespace tandem::model
