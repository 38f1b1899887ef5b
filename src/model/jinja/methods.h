// Python methods of str, list, tuple and dict values that templates call ("x".strip(),
// d.items(), ...), with markupsafe's behaviour on safe strings.
//
// Thread safety: pure functions; the returned callables capture their receiver by value.
#pragma once

#include <string_view>

#include "model/jinja/value.h"
#include "tandem/status.h"

namespace tandem::jinja {

enum class MethodLookup {
  kFound,    // *method is a bound callable
  kUnsafe,   // a mutating method the immutable sandbox refuses (list.append, dict.update, ...)
  kMissing,  // no such method
};

MethodLookup FindMethod(const Value& object, std::string_view name, Value* method);

}  // namespace tandem::jinja
