// Global functions: jinja2's range, dict and namespace, and transformers' raise_exception and
// strftime_now.
#include <ctime>
#include <memory>
#include <string>

#include "common/status_macros.h"
#include "model/jinja/arguments.h"
#include "model/jinja/builtins.h"

namespace tandem::jinja {
namespace {

// jinja2's sandbox refuses longer ranges.
constexpr int64_t kMaxRange = 100000;

StatusOr<Value> Range(const CallArgs& args) {
  if (!args.keyword.empty()) return TypeError("range() takes no keyword arguments");
  const size_t n = args.positional.size();
  if (n < 1 || n > 3) return TypeError("range expected 1 to 3 arguments, got " + std::to_string(n));
  int64_t bounds[3] = {0, 0, 1};
  for (size_t i = 0; i < n; ++i) {
    if (!args.positional[i].is_int()) {
      return TypeError("'" + TypeName(args.positional[i]) +
                       "' object cannot be interpreted as an integer");
    }
  }
  if (n == 1) {
    bounds[1] = args.positional[0].int_value();
  } else {
    bounds[0] = args.positional[0].int_value();
    bounds[1] = args.positional[1].int_value();
    if (n == 3) bounds[2] = args.positional[2].int_value();
  }
  const int64_t start = bounds[0];
  const int64_t stop = bounds[1];
  const int64_t step = bounds[2];
  if (step == 0) return InvalidArgumentError("range() arg 3 must not be zero");
  const long double span = static_cast<long double>(stop) - static_cast<long double>(start);
  const long double count = span / step;
  if (count > kMaxRange) {
    return InvalidArgumentError(
        "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  ValueList items;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) items.push_back(Value::Int(i));
  return Value::List(std::move(items));
}

Status AddKeywords(const CallArgs& args, std::string_view function, Dict* out) {
  if (args.positional.size() > 1) {
    return TypeError(std::string(function) + " expected at most 1 argument, got " +
                     std::to_string(args.positional.size()));
  }
  if (!args.positional.empty()) {
    const Value& initial = args.positional[0];
    if (initial.is_dict()) {
      for (const auto& [key, value] : initial.dict().items()) out->Set(key, value);
    } else if (initial.is_sequence()) {
      for (const Value& pair : initial.items()) {
        if (!pair.is_sequence() || pair.items().size() != 2) {
          return TypeError(std::string(function) + " sequence elements must be pairs");
        }
        out->Set(pair.items()[0], pair.items()[1]);
      }
    } else {
      return TypeError("'" + TypeName(initial) + "' object is not iterable");
    }
  }
  for (const auto& [key, value] : args.keyword) out->Set(Value::String(key), value);
  return OkStatus();
}

StatusOr<Value> MakeDict(const CallArgs& args) {
  Dict dict;
  TANDEM_RETURN_IF_ERROR(AddKeywords(args, "dict", &dict));
  return Value::FromDict(std::move(dict));
}

StatusOr<Value> MakeNamespace(const CallArgs& args) {
  auto object = std::make_shared<Object>();
  object->type = Object::Type::kNamespace;
  TANDEM_RETURN_IF_ERROR(AddKeywords(args, "namespace", &object->attributes));
  return Value::FromObject(std::move(object));
}

StatusOr<Value> RaiseException(const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("raise_exception", args, {"message"}));
  return InvalidArgumentError(ToStr(a[0]));
}

StatusOr<Value> StrftimeNow(const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("strftime_now", args, {"format"}));
  TANDEM_ASSIGN_OR_RETURN(const std::string format, StringArgument(a[0], "strftime_now", "format"));
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[512];
  const size_t n = std::strftime(buf, sizeof(buf), format.c_str(), &local);
  if (n == 0 && !format.empty()) return InvalidArgumentError("strftime_now: format too long");
  return Value::String(std::string(buf, n));
}

Dict MakeGlobals() {
  Dict globals;
  globals.Set(Value::String("range"), Value::FromCallable("range", Range));
  globals.Set(Value::String("dict"), Value::FromCallable("dict", MakeDict));
  globals.Set(Value::String("namespace"), Value::FromCallable("namespace", MakeNamespace));
  globals.Set(Value::String("raise_exception"),
              Value::FromCallable("raise_exception", RaiseException));
  globals.Set(Value::String("strftime_now"), Value::FromCallable("strftime_now", StrftimeNow));
  return globals;
}

}  // namespace

const Dict& Globals() {
  static const Dict* const globals = new Dict(MakeGlobals());
  return *globals;
}

}  // namespace tandem::jinja
