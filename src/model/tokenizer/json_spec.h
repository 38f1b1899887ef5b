// Field access shared by the parsers of tokenizer.json's components (normalizer, pre_tokenizer,
// model, added_tokens, post_processor, decoder): typed field readers, a component's "type", and
// the steps of a Sequence. Errors are InvalidArgument, one line naming the file and the field by
// its path from the top of the file: "<source>: field '<path>.<key>' must be a string". A field
// that is present but null counts as absent, as tokenizer.json writes null for "not set". Nothing
// here throws: every value's type is checked before it is read.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tandem/status.h"

namespace tandem::tokenizer {

// InvalidArgument "<source>: field '<field>' <what>".
Status FieldError(std::string_view source, const std::string& field, std::string_view what);

// The value of `key` in `object`, or nullptr when absent or null (or `object` is not an object).
const nlohmann::json* FindField(const nlohmann::json& object, const char* key);

// The readers below name the field '<path>.<key>' in their errors and leave `*out` unchanged when
// they fail.

// A required string: "is missing" or "must be a string".
Status ReadString(const nlohmann::json& object, const char* key, std::string_view source,
                  const std::string& path, std::string* out);

// A string that may be absent, which keeps `*out` as it is: "must be a string".
Status ReadOptionalString(const nlohmann::json& object, const char* key, std::string_view source,
                          const std::string& path, std::string* out);

// A boolean that may be absent, which keeps `*out` (the default) as it is: "must be a boolean".
Status ReadBool(const nlohmann::json& object, const char* key, std::string_view source,
                const std::string& path, bool* out);

// A required string holding exactly one character (valid UTF-8): errors of ReadString, or "must
// be a single character".
Status ReadChar(const nlohmann::json& object, const char* key, std::string_view source,
                const std::string& path, char32_t* out);

// A required non-negative integer: "is missing" or "must be a non-negative integer".
Status ReadCount(const nlohmann::json& object, const char* key, std::string_view source,
                 const std::string& path, size_t* out);

// The "type" of the component `spec` at `path`: "<source>: field '<path>' must be an object", or
// the errors of ReadString on '<path>.type'.
StatusOr<std::string> ReadComponentType(const nlohmann::json& spec, std::string_view source,
                                        const std::string& path);

// Calls `visit` on each element of the array under `key`, in order, with the element's path
// ("<path>.<key>[i]"), and returns the first error it returns. An absent, null or non-array field
// is "<source>: field '<path>.<key>' must be an array".
Status ForEachElement(const nlohmann::json& object, const char* key, std::string_view source,
                      const std::string& path,
                      const std::function<Status(const nlohmann::json& element,
                                                 const std::string& element_path)>& visit);

// The parser of one kind of component (ParseNormalizer, ParseDecoder, ...).
template <typename T>
using ComponentParser = StatusOr<std::unique_ptr<T>> (*)(const nlohmann::json& spec,
                                                         std::string_view source,
                                                         const std::string& path);

// The steps of a Sequence component: each element of the array under `key` parsed by `parse`,
// with the errors of ForEachElement and of `parse`.
template <typename T>
StatusOr<std::vector<std::unique_ptr<T>>> ParseSequenceSteps(const nlohmann::json& spec,
                                                             const char* key,
                                                             std::string_view source,
                                                             const std::string& path,
                                                             ComponentParser<T> parse) {
  std::vector<std::unique_ptr<T>> steps;
  const Status status = ForEachElement(
      spec, key, source, path, [&](const nlohmann::json& element, const std::string& element_path) {
        StatusOr<std::unique_ptr<T>> step = parse(element, source, element_path);
        if (!step.ok()) return step.status();
        steps.push_back(std::move(step).value());
        return OkStatus();
      });
  if (!status.ok()) return status;
  return steps;
}

}  // namespace tandem::tokenizer
