// Python's json.dumps over template values, as transformers' `tojson` filter calls it
// (ensure_ascii=False by default, insertion-ordered keys, floats printed as Python repr).
//
// Thread safety: pure functions.
#pragma once

#include <optional>
#include <string>

#include "model/jinja/value.h"
#include "tandem/status.h"

namespace tandem::jinja {

struct JsonDumpOptions {
  // Escape every code point outside printable ASCII as \uXXXX.
  bool ensure_ascii = false;
  // One line when absent; otherwise each item on its own line, indented by `indent` per level.
  std::optional<std::string> indent;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  // Sort object keys (Python ordering; mixed key types are a TypeError).
  bool sort_keys = false;
};

// Values json.dumps cannot serialise (Undefined, namespaces, callables) are a TypeError in
// Python's words ("Object of type Undefined is not JSON serializable").
StatusOr<std::string> DumpJson(const Value& value, const JsonDumpOptions& options);

}  // namespace tandem::jinja
