#include "model/jinja/arguments.h"

#include <algorithm>
#include <string>

namespace tandem::jinja {

StatusOr<ValueList> BindArguments(std::string_view function, const CallArgs& args,
                                  std::initializer_list<std::string_view> names) {
  if (args.positional.size() > names.size()) {
    return TypeError(std::string(function) + "() takes at most " + std::to_string(names.size()) +
                     " argument(s) (" + std::to_string(args.positional.size()) + " given)");
  }
  ValueList bound(names.size());
  std::copy(args.positional.begin(), args.positional.end(), bound.begin());
  for (const auto& [key, value] : args.keyword) {
    const auto it = std::find(names.begin(), names.end(), key);
    if (it == names.end()) {
      return TypeError(std::string(function) + "() got an unexpected keyword argument '" + key +
                       "'");
    }
    const auto index = static_cast<size_t>(it - names.begin());
    if (index < args.positional.size()) {
      return TypeError(std::string(function) + "() got multiple values for argument '" + key + "'");
    }
    bound[index] = value;
  }
  return bound;
}

StatusOr<int64_t> IntArgument(const Value& v, std::string_view function, std::string_view name) {
  if (!v.is_int()) {
    return TypeError(std::string(function) + "(): '" + std::string(name) +
                     "' must be an integer, not '" + TypeName(v) + "'");
  }
  return v.int_value();
}

StatusOr<std::string> StringArgument(const Value& v, std::string_view function,
                                     std::string_view name) {
  if (!v.is_string()) {
    return TypeError(std::string(function) + "(): '" + std::string(name) + "' must be str, not " +
                     TypeName(v));
  }
  return v.str();
}

}  // namespace tandem::jinja
