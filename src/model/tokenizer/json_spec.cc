#include "model/tokenizer/json_spec.h"

#include <cstdint>
#include <nlohmann/json.hpp>

#include "common/status_macros.h"
#include "model/tokenizer/utf8.h"

namespace tandem::tokenizer {
namespace {

using Json = nlohmann::json;

}  // namespace

Status FieldError(std::string_view source, const std::string& field, std::string_view what) {
  return InvalidArgumentError(std::string(source) + ": field '" + field + "' " + std::string(what));
}

const Json* FindField(const Json& object, const char* key) {
  // find() on a value that is not an object returns end().
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

Status ReadString(const Json& object, const char* key, std::string_view source,
                  const std::string& path, std::string* out) {
  const Json* value = FindField(object, key);
  if (value == nullptr) return FieldError(source, path + "." + key, "is missing");
  if (!value->is_string()) return FieldError(source, path + "." + key, "must be a string");
  *out = value->get<std::string>();
  return OkStatus();
}

Status ReadOptionalString(const Json& object, const char* key, std::string_view source,
                          const std::string& path, std::string* out) {
  const Json* value = FindField(object, key);
  if (value == nullptr) return OkStatus();
  if (!value->is_string()) return FieldError(source, path + "." + key, "must be a string");
  *out = value->get<std::string>();
  return OkStatus();
}

Status ReadBool(const Json& object, const char* key, std::string_view source,
                const std::string& path, bool* out) {
  const Json* value = FindField(object, key);
  if (value == nullptr) return OkStatus();
  if (!value->is_boolean()) return FieldError(source, path + "." + key, "must be a boolean");
  *out = value->get<bool>();
  return OkStatus();
}

Status ReadChar(const Json& object, const char* key, std::string_view source,
                const std::string& path, char32_t* out) {
  std::string text;
  TANDEM_RETURN_IF_ERROR(ReadString(object, key, source, path, &text));
  // NextCodePoint needs valid UTF-8; checking first also rejects a lone invalid byte.
  if (text.empty() || FindInvalidUtf8(text).has_value()) {
    return FieldError(source, path + "." + key, "must be a single character");
  }
  size_t pos = 0;
  const char32_t c = NextCodePoint(text, pos);
  if (pos != text.size()) return FieldError(source, path + "." + key, "must be a single character");
  *out = c;
  return OkStatus();
}

Status ReadCount(const Json& object, const char* key, std::string_view source,
                 const std::string& path, size_t* out) {
  const Json* value = FindField(object, key);
  if (value == nullptr) return FieldError(source, path + "." + key, "is missing");
  if (!value->is_number_integer() || value->get<int64_t>() < 0) {
    return FieldError(source, path + "." + key, "must be a non-negative integer");
  }
  *out = static_cast<size_t>(value->get<int64_t>());
  return OkStatus();
}

StatusOr<std::string> ReadComponentType(const Json& spec, std::string_view source,
                                        const std::string& path) {
  if (!spec.is_object()) return FieldError(source, path, "must be an object");
  std::string type;
  TANDEM_RETURN_IF_ERROR(ReadString(spec, "type", source, path, &type));
  return type;
}

Status ForEachElement(
    const Json& object, const char* key, std::string_view source, const std::string& path,
    const std::function<Status(const Json& element, const std::string& element_path)>& visit) {
  const std::string field = path + "." + key;
  const Json* array = FindField(object, key);
  if (array == nullptr || !array->is_array()) return FieldError(source, field, "must be an array");
  for (size_t i = 0; i < array->size(); ++i) {
    TANDEM_RETURN_IF_ERROR(visit((*array)[i], field + "[" + std::to_string(i) + "]"));
  }
  return OkStatus();
}

}  // namespace tandem::tokenizer
