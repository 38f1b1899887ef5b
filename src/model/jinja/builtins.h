// The built-in filters, tests and global functions of jinja2, as transformers configures them
// (its `tojson`, `raise_exception` and `strftime_now`).
//
// Thread safety: the tables are immutable; the functions are pure except strftime_now (clock).
#pragma once

#include <string_view>

#include "model/jinja/value.h"
#include "tandem/status.h"

namespace tandem::jinja {

// `input | name(args)`. Errors carry no line: the interpreter adds it.
using FilterFunction = StatusOr<Value> (*)(const Value& input, const CallArgs& args);
// `input is name(args)`.
using TestFunction = StatusOr<bool> (*)(const Value& input, const CallArgs& args);

// Null when there is no such filter or test.
FilterFunction FindFilter(std::string_view name);
TestFunction FindTest(std::string_view name);

// Whether jinja2 has a filter or test of that name (for "unsupported" rather than "unknown").
bool IsJinjaFilter(std::string_view name);
bool IsJinjaTest(std::string_view name);

// range, dict, namespace, raise_exception (fails with its message) and strftime_now.
const Dict& Globals();

}  // namespace tandem::jinja
