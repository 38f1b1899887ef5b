// Binding of call arguments to parameter names, as Python binds them, for the built-in filters,
// tests, globals and methods.
//
// Thread safety: pure functions.
#pragma once

#include <initializer_list>
#include <string_view>

#include "model/jinja/value.h"
#include "tandem/status.h"

namespace tandem::jinja {

// One value per name, in order: positional arguments first, then keywords by name. Parameters not
// given are Undefined (test with Given). Too many arguments or an unknown keyword is a TypeError
// naming `function`.
StatusOr<ValueList> BindArguments(std::string_view function, const CallArgs& args,
                                  std::initializer_list<std::string_view> names);

inline bool Given(const Value& v) { return !v.is_undefined(); }

// An int argument (bool counts) or a TypeError naming the parameter.
StatusOr<int64_t> IntArgument(const Value& v, std::string_view function, std::string_view name);

// A str argument or a TypeError naming the parameter.
StatusOr<std::string> StringArgument(const Value& v, std::string_view function,
                                     std::string_view name);

}  // namespace tandem::jinja
