#include "model/json_fields.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <utility>

namespace tandem::model {
namespace {

using json = nlohmann::json;

// Records where a parse failed. Used only after the DOM parse reported failure, because the DOM
// parser without exceptions says that it failed but not where.
class ErrorLocator : public json::json_sax_t {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    message_ = ex.what();
    return false;
  }

  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

// "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> "parse error at ...".
std::string StripExceptionTag(std::string message) {
  if (!message.empty() && message.front() == '[') {
    const size_t close = message.find("] ");
    if (close != std::string::npos) message.erase(0, close + 2);
  }
  return message;
}

std::string OneLine(std::string_view text, size_t max_chars) {
  std::string out;
  for (const char c : text) {
    if (out.size() >= max_chars) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}

constexpr size_t kMaxQuotedChars = 80;

}  // namespace

StatusOr<json> ParseJsonObject(std::string_view text, std::string_view source) {
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    ErrorLocator locator;
    json::sax_parse(text, &locator, json::input_format_t::json, /*strict=*/true);
    std::string detail = StripExceptionTag(locator.message());
    if (detail.empty()) detail = "syntax error";
    return InvalidArgumentError(std::string(source) + ": malformed JSON: " + OneLine(detail, 200));
  }
  if (!value.is_object()) {
    return InvalidArgumentError(std::string(source) + ": top level must be a JSON object, got " +
                                std::string(JsonTypeName(value)));
  }
  return value;
}

std::string QuoteForMessage(std::string_view text) {
  return "'" + OneLine(text, kMaxQuotedChars) + "'";
}

std::string QuoteJsonForMessage(const json& value) {
  if (value.is_string()) return QuoteForMessage(value.get_ref<const std::string&>());
  // The replace handler keeps dump() from throwing on invalid UTF-8.
  return OneLine(value.dump(-1, ' ', false, json::error_handler_t::replace), kMaxQuotedChars);
}

std::string FormatDouble(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  if (result.ec != std::errc()) return "?";
  return std::string(buffer, result.ptr);
}

std::string_view JsonTypeName(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "object";
    case json::value_t::array:
      return "array";
    case json::value_t::string:
      return "string";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "number";
    case json::value_t::binary:
      return "binary";
    case json::value_t::discarded:
      return "discarded";
  }
  return "unknown";
}

JsonFields::JsonFields(const json& object, std::string_view source, std::string prefix)
    : object_(object), source_(source), prefix_(std::move(prefix)) {}

const json* JsonFields::Find(std::string_view key) const {
  if (!object_.is_object()) return nullptr;
  const auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool JsonFields::Contains(std::string_view key) const {
  return object_.is_object() && object_.find(key) != object_.end();
}

std::string JsonFields::FieldName(std::string_view key) const { return prefix_ + std::string(key); }

Status JsonFields::Error(std::string_view key, std::string_view what) const {
  return InvalidArgumentError(source_ + ": field '" + FieldName(key) + "' " + std::string(what));
}

Status JsonFields::TypeError(std::string_view key, std::string_view expected,
                             const json& got) const {
  return Error(key, "must be " + std::string(expected) + ", got " + std::string(JsonTypeName(got)) +
                        " " + QuoteJsonForMessage(got));
}

StatusOr<std::optional<int64_t>> JsonFields::OptionalInt(std::string_view key) const {
  const json* value = Find(key);
  if (value == nullptr) return std::optional<int64_t>();
  if (value->is_number_integer() && !value->is_number_unsigned()) {
    return std::optional<int64_t>(value->get<int64_t>());
  }
  if (value->is_number_unsigned()) {
    const uint64_t u = value->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Error(key, "is out of range: " + QuoteJsonForMessage(*value));
    }
    return std::optional<int64_t>(static_cast<int64_t>(u));
  }
  if (value->is_number_float()) {
    const double d = value->get<double>();
    // 2^63 is exactly representable; anything at or past it does not fit.
    if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 9.2233720368547758e18) {
      return std::optional<int64_t>(static_cast<int64_t>(d));
    }
  }
  return TypeError(key, "an integer", *value);
}

StatusOr<int64_t> JsonFields::RequiredInt(std::string_view key) const {
  StatusOr<std::optional<int64_t>> value = OptionalInt(key);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return Error(key, "is missing");
  return **value;
}

StatusOr<std::optional<int>> JsonFields::OptionalPositiveInt(std::string_view key) const {
  StatusOr<std::optional<int64_t>> value = OptionalInt(key);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::optional<int>();
  const int64_t v = **value;
  if (v <= 0 || v > std::numeric_limits<int32_t>::max()) {
    return Error(key, "must be a positive integer below 2^31 (got " + std::to_string(v) + ")");
  }
  return std::optional<int>(static_cast<int>(v));
}

StatusOr<int> JsonFields::RequiredPositiveInt(std::string_view key) const {
  StatusOr<std::optional<int>> value = OptionalPositiveInt(key);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return Error(key, "is missing");
  return **value;
}

StatusOr<std::optional<double>> JsonFields::OptionalDouble(std::string_view key) const {
  const json* value = Find(key);
  if (value == nullptr) return std::optional<double>();
  if (!value->is_number()) return TypeError(key, "a number", *value);
  return std::optional<double>(value->get<double>());
}

StatusOr<std::optional<bool>> JsonFields::OptionalBool(std::string_view key) const {
  const json* value = Find(key);
  if (value == nullptr) return std::optional<bool>();
  if (!value->is_boolean()) return TypeError(key, "a boolean", *value);
  return std::optional<bool>(value->get<bool>());
}

StatusOr<std::optional<std::string>> JsonFields::OptionalString(std::string_view key) const {
  const json* value = Find(key);
  if (value == nullptr) return std::optional<std::string>();
  if (!value->is_string()) return TypeError(key, "a string", *value);
  return std::optional<std::string>(value->get<std::string>());
}

StatusOr<std::vector<int32_t>> JsonFields::TokenIds(std::string_view key) const {
  const json* value = Find(key);
  std::vector<int32_t> ids;
  if (value == nullptr) return ids;
  auto to_id = [&](const json& item) -> StatusOr<int32_t> {
    if (!item.is_number_integer()) {
      return TypeError(key, "a token id or a list of token ids", *value);
    }
    if (item.is_number_unsigned() ? item.get<uint64_t>() > INT32_MAX
                                  : (item.get<int64_t>() < 0 || item.get<int64_t>() > INT32_MAX)) {
      return Error(
          key, "holds token id " + QuoteJsonForMessage(item) + ", which is not in [0, 2^31 - 1]");
    }
    return static_cast<int32_t>(item.get<int64_t>());
  };
  if (value->is_array()) {
    for (const json& item : *value) {
      StatusOr<int32_t> id = to_id(item);
      if (!id.ok()) return id.status();
      ids.push_back(*id);
    }
    return ids;
  }
  StatusOr<int32_t> id = to_id(*value);
  if (!id.ok()) return id.status();
  ids.push_back(*id);
  return ids;
}

}  // namespace tandem::model
