// jinja2's filters, with transformers' `tojson`. Filters that return generators in jinja2
// (select, map, unique, reverse, ...) return Iterator values: computed eagerly, but truthy even
// when empty and without a length, as generators are.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "common/status_macros.h"
#include "model/jinja/arguments.h"
#include "model/jinja/builtins.h"
#include "model/jinja/formatting.h"
#include "model/jinja/json_dump.h"
#include "model/jinja/methods.h"
#include "model/jinja/operators.h"
#include "model/jinja/utf8.h"

namespace tandem::jinja {
namespace {

// jinja2's soft_str: str() that keeps a safe string safe ("" for Undefined).
Value SoftStr(const Value& v) {
  if (v.is_string()) return v;
  return Value::String(ToStr(v));
}

// Calls the Python method `name` of `self`.
StatusOr<Value> CallMethod(const Value& self, std::string_view name, CallArgs args) {
  Value method;
  if (FindMethod(self, name, &method) != MethodLookup::kFound) {
    return InternalError("no method " + std::string(name));
  }
  return method.callable().function(std::move(args));
}

Value IgnoreCase(const Value& v) {
  if (!v.is_string()) return v;
  std::u32string text = DecodeUtf8(v.str());
  for (char32_t& c : text) c = ToLower(c);
  return Value::String(EncodeUtf8(text));
}

// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0.
StatusOr<Value> LookupAttribute(const Value& item, const Value& attribute) {
  if (!Given(attribute) || attribute.is_none()) return item;
  if (!attribute.is_string()) return GetItem(item, attribute);
  Value current = item;
  const std::string& path = attribute.str();
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(),
                                                     [](char c) { return c >= '0' && c <= '9'; });
    TANDEM_ASSIGN_OR_RETURN(current, GetItem(current, digits ? Value::Int(std::atoll(part.c_str()))
                                                             : Value::String(part)));
    if (dot == std::string::npos) return current;
    start = dot + 1;
  }
}

// Sorts by `keys` (Python ordering), keeping equal items in order.
Status StableSortBy(std::vector<std::pair<Value, Value>>* keyed, bool reverse) {
  Status error;
  std::stable_sort(keyed->begin(), keyed->end(), [&](const auto& a, const auto& b) {
    if (!error.ok()) return false;
    StatusOr<int> c = reverse ? Compare(b.first, a.first, "<") : Compare(a.first, b.first, "<");
    if (!c.ok()) {
      error = c.status();
      return false;
    }
    return *c < 0;
  });
  return error;
}

std::optional<double> ParsePythonFloat(std::string_view text) {
  std::string s = PythonStrip(text, nullptr, true, true);
  std::string lower;
  for (const char c : s) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  const size_t sign = !lower.empty() && (lower[0] == '+' || lower[0] == '-') ? 1 : 0;
  const std::string body = lower.substr(sign);
  const double negative = sign && lower[0] == '-' ? -1.0 : 1.0;
  if (body == "inf" || body == "infinity") return negative * HUGE_VAL;
  if (body == "nan") return std::nan("");
  // digits with single underscores between digits, optional fraction and exponent
  std::string cleaned = lower.substr(0, sign);
  bool digits = false;
  bool dot = false;
  bool exponent = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c >= '0' && c <= '9') {
      digits = true;
      cleaned += c;
    } else if (c == '_') {
      if (i == 0 || i + 1 >= body.size() ||
          !std::isdigit(static_cast<unsigned char>(body[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(body[i + 1]))) {
        return std::nullopt;
      }
    } else if (c == '.' && !dot && !exponent) {
      dot = true;
      cleaned += c;
    } else if (c == 'e' && digits && !exponent) {
      exponent = true;
      digits = false;
      cleaned += c;
      if (i + 1 < body.size() && (body[i + 1] == '+' || body[i + 1] == '-')) cleaned += body[++i];
    } else {
      return std::nullopt;
    }
  }
  if (!digits) return std::nullopt;
  return std::strtod(cleaned.c_str(), nullptr);
}

std::optional<int64_t> ParsePythonInt(std::string_view text, int base) {
  std::string s = PythonStrip(text, nullptr, true, true);
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  if (base == 16 && s.size() > i + 1 && s[i] == '0' && (s[i + 1] | 0x20) == 'x') i += 2;
  if (base == 8 && s.size() > i + 1 && s[i] == '0' && (s[i + 1] | 0x20) == 'o') i += 2;
  if (base == 2 && s.size() > i + 1 && s[i] == '0' && (s[i + 1] | 0x20) == 'b') i += 2;
  if (i >= s.size()) return std::nullopt;
  uint64_t value = 0;
  bool previous_digit = false;
  for (; i < s.size(); ++i) {
    if (s[i] == '_' && previous_digit && i + 1 < s.size() && s[i + 1] != '_') {
      previous_digit = false;
      continue;
    }
    const char c = static_cast<char>(s[i] | 0x20);
    const int d = c >= '0' && c <= '9' ? c - '0' : (c >= 'a' && c <= 'z' ? c - 'a' + 10 : 99);
    if (d >= base) return std::nullopt;
    if (value > (uint64_t{1} << 62)) return std::nullopt;
    value = value * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
    previous_digit = true;
  }
  if (!previous_digit) return std::nullopt;
  return negative ? -static_cast<int64_t>(value) : static_cast<int64_t>(value);
}

#define TANDEM_BIND(names, ...) \
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments(names, args, {__VA_ARGS__}))

StatusOr<Value> FilterAbs(const Value& v, const CallArgs& args) {
  TANDEM_BIND("abs");
  if (v.is_int()) return v.int_value() < 0 ? Negate(v) : Value::Int(v.int_value());
  if (v.kind() == Value::Kind::kFloat) return Value::Float(std::fabs(v.number()));
  if (v.is_undefined()) return InvalidArgumentError(v.undefined_hint());
  return TypeError("bad operand type for abs(): '" + TypeName(v) + "'");
}

// Attribute access only (never a dict key), as jinja2's getattr-based `attr` filter.
StatusOr<Value> FilterAttr(const Value& v, const CallArgs& args) {
  TANDEM_BIND("attr", "name");
  TANDEM_ASSIGN_OR_RETURN(const std::string name, StringArgument(a[0], "attr", "name"));
  if (!v.is_dict()) return GetAttr(v, name);
  Value method;
  switch (FindMethod(v, name, &method)) {
    case MethodLookup::kFound:
      return method;
    case MethodLookup::kUnsafe:
      return Value::Undefined("access to attribute '" + name + "' of 'dict' object is unsafe.");
    case MethodLookup::kMissing:
      break;
  }
  return Value::Undefined("'dict object' has no attribute '" + name + "'");
}

StatusOr<Value> FilterBatch(const Value& v, const CallArgs& args) {
  TANDEM_BIND("batch", "linecount", "fill_with");
  TANDEM_ASSIGN_OR_RETURN(const int64_t count, IntArgument(a[0], "batch", "linecount"));
  if (count <= 0) return InvalidArgumentError("batch linecount must be positive");
  TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(v));
  ValueList out;
  ValueList current;
  for (const Value& item : items) {
    if (static_cast<int64_t>(current.size()) == count) {
      out.push_back(Value::List(std::move(current)));
      current.clear();
    }
    current.push_back(item);
  }
  if (!current.empty()) {
    if (Given(a[1]) && !a[1].is_none()) {
      while (static_cast<int64_t>(current.size()) < count) current.push_back(a[1]);
    }
    out.push_back(Value::List(std::move(current)));
  }
  return Value::Iterator(std::move(out));
}

template <const char* kMethod>
StatusOr<Value> StringMethodFilter(const Value& v, const CallArgs& args) {
  return CallMethod(SoftStr(v), kMethod, args);
}

constexpr char kUpper[] = "upper";
constexpr char kLower[] = "lower";
constexpr char kCapitalize[] = "capitalize";

StatusOr<Value> FilterCenter(const Value& v, const CallArgs& args) {
  TANDEM_BIND("center", "width");
  return CallMethod(SoftStr(v), "center", CallArgs{{Given(a[0]) ? a[0] : Value::Int(80)}, {}});
}

StatusOr<Value> FilterDefault(const Value& v, const CallArgs& args) {
  TANDEM_BIND("default", "default_value", "boolean");
  if (v.is_undefined() || (Truthy(a[1]) && !Truthy(v))) {
    return Given(a[0]) ? a[0] : Value::String("");
  }
  return v;
}

StatusOr<Value> FilterDictSort(const Value& v, const CallArgs& args) {
  TANDEM_BIND("dictsort", "case_sensitive", "by", "reverse");
  if (v.is_undefined()) return InvalidArgumentError(v.undefined_hint());
  if (!v.is_dict()) return TypeError("'" + TypeName(v) + "' object has no attribute 'items'");
  int position = 0;
  if (Given(a[1])) {
    if (a[1].is_string() && a[1].str() == "value") {
      position = 1;
    } else if (!a[1].is_string() || a[1].str() != "key") {
      return InvalidArgumentError("You can only sort by either \"key\" or \"value\"");
    }
  }
  std::vector<std::pair<Value, Value>> keyed;
  for (const auto& [key, value] : v.dict().items()) {
    const Value& sort_key = position == 0 ? key : value;
    keyed.emplace_back(Truthy(a[0]) ? sort_key : IgnoreCase(sort_key), Value::Tuple({key, value}));
  }
  TANDEM_RETURN_IF_ERROR(StableSortBy(&keyed, Truthy(a[2])));
  ValueList out;
  for (auto& item : keyed) out.push_back(std::move(item.second));
  return Value::List(std::move(out));
}

StatusOr<Value> FilterEscape(const Value& v, const CallArgs& args) {
  TANDEM_BIND("escape");
  if (v.is_string() && v.safe()) return v;
  return Value::String(EscapeHtml(ToStr(v.is_undefined() ? Value::String("") : v)), true);
}

StatusOr<Value> FilterForceEscape(const Value& v, const CallArgs& args) {
  TANDEM_BIND("forceescape");
  return Value::String(EscapeHtml(ToStr(v)), true);
}

StatusOr<Value> FilterFirst(const Value& v, const CallArgs& args) {
  TANDEM_BIND("first");
  TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(v));
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return items.front();
}

StatusOr<Value> FilterLast(const Value& v, const CallArgs& args) {
  TANDEM_BIND("last");
  if (v.kind() == Value::Kind::kIterator) return TypeError("'generator' object is not reversible");
  TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(v));
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

StatusOr<Value> FilterFloat(const Value& v, const CallArgs& args) {
  TANDEM_BIND("float", "default");
  if (v.is_undefined()) return InvalidArgumentError(v.undefined_hint());
  Value fallback = Given(a[0]) ? a[0] : Value::Float(0.0);
  if (v.is_number()) return Value::Float(v.number());
  if (v.is_string()) {
    if (const std::optional<double> f = ParsePythonFloat(v.str())) return Value::Float(*f);
  }
  return fallback;
}

StatusOr<Value> FilterFormat(const Value& v, const CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty()) {
    return InvalidArgumentError("can't handle positional and keyword arguments at the same time");
  }
  Value format_args;
  if (!args.keyword.empty()) {
    Dict kwargs;
    for (const auto& [key, value] : args.keyword) kwargs.Set(Value::String(key), value);
    format_args = Value::FromDict(std::move(kwargs));
  } else {
    format_args = Value::Tuple(args.positional);
  }
  return PercentFormat(SoftStr(v), format_args);
}

StatusOr<Value> FilterIndent(const Value& v, const CallArgs& args) {
  TANDEM_BIND("indent", "width", "first", "blank");
  // jinja2 appends "\n" to the input before converting it.
  if (v.is_undefined()) return InvalidArgumentError(v.undefined_hint());
  if (!v.is_string()) {
    return TypeError("unsupported operand type(s) for +=: '" + TypeName(v) + "' and 'str'");
  }
  std::string indention = "    ";
  if (a[0].is_string()) {
    indention = a[0].str();
  } else if (Given(a[0])) {
    TANDEM_ASSIGN_OR_RETURN(const int64_t width, IntArgument(a[0], "indent", "width"));
    indention.assign(static_cast<size_t>(std::max<int64_t>(width, 0)), ' ');
  }
  const Value text = SoftStr(v);
  TANDEM_ASSIGN_OR_RETURN(const Value lines_value,
                          CallMethod(Value::String(text.str() + "\n"), "splitlines", {}));
  const ValueList& lines = lines_value.items();
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i].str();
    if (i > 0) out += '\n';
    if (i > 0 && (Truthy(a[2]) || !line.empty())) out += indention;
    out += line;
  }
  if (Truthy(a[1])) out = indention + out;
  return Value::String(std::move(out), text.safe());
}

StatusOr<Value> FilterInt(const Value& v, const CallArgs& args) {
  TANDEM_BIND("int", "default", "base");
  if (v.is_undefined()) return InvalidArgumentError(v.undefined_hint());
  Value fallback = Given(a[0]) ? a[0] : Value::Int(0);
  int64_t base = 10;
  if (Given(a[1])) {
    TANDEM_ASSIGN_OR_RETURN(base, IntArgument(a[1], "int", "base"));
    if (base < 2 || base > 36) return InvalidArgumentError("int() base must be >= 2 and <= 36");
  }
  if (v.is_int()) return Value::Int(v.int_value());
  double f = 0;
  if (v.kind() == Value::Kind::kFloat) {
    f = v.number();
  } else if (v.is_string()) {
    if (const std::optional<int64_t> i = ParsePythonInt(v.str(), static_cast<int>(base))) {
      return Value::Int(*i);
    }
    const std::optional<double> parsed = ParsePythonFloat(v.str());
    if (!parsed) return fallback;
    f = *parsed;
  } else {
    return fallback;
  }
  if (std::isnan(f)) return fallback;
  if (std::isinf(f)) return InvalidArgumentError("cannot convert float infinity to integer");
  if (std::fabs(f) >= 9.2e18) return InvalidArgumentError("integer overflow");
  return Value::Int(static_cast<int64_t>(std::trunc(f)));
}

StatusOr<Value> FilterItems(const Value& v, const CallArgs& args) {
  TANDEM_BIND("items");
  if (v.is_undefined()) return Value::Iterator({});
  if (!v.is_dict()) return TypeError("Can only get item pairs from a mapping.");
  ValueList out;
  for (const auto& [key, value] : v.dict().items()) out.push_back(Value::Tuple({key, value}));
  return Value::Iterator(std::move(out));
}

StatusOr<Value> FilterJoin(const Value& v, const CallArgs& args) {
  TANDEM_BIND("join", "d", "attribute");
  TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(v));
  const std::string separator = Given(a[0]) ? ToStr(a[0]) : "";
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += separator;
    TANDEM_ASSIGN_OR_RETURN(const Value item, LookupAttribute(items[i], a[1]));
    out += ToStr(item);
  }
  return Value::String(std::move(out));
}

StatusOr<Value> FilterLength(const Value& v, const CallArgs& args) {
  TANDEM_BIND("length");
  TANDEM_ASSIGN_OR_RETURN(const int64_t length, Length(v));
  return Value::Int(length);
}

StatusOr<Value> FilterList(const Value& v, const CallArgs& args) {
  TANDEM_BIND("list");
  TANDEM_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  return Value::List(std::move(items));
}

StatusOr<Value> FilterMap(const Value& v, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(v));
  ValueList out;
  if (args.positional.empty()) {
    Value attribute;
    Value fallback;
    for (const auto& [key, value] : args.keyword) {
      if (key == "attribute") {
        attribute = value;
      } else if (key == "default") {
        fallback = value;
      } else {
        return InvalidArgumentError("Unexpected keyword argument '" + key + "'");
      }
    }
    if (!Given(attribute)) return InvalidArgumentError("map requires a filter argument");
    for (const Value& item : items) {
      TANDEM_ASSIGN_OR_RETURN(Value mapped, LookupAttribute(item, attribute));
      out.push_back(mapped.is_undefined() && Given(fallback) && !fallback.is_none() ? fallback
                                                                                    : mapped);
    }
    return Value::Iterator(std::move(out));
  }
  if (!args.positional[0].is_string()) return TypeError("map filter name must be a string");
  const FilterFunction filter = FindFilter(args.positional[0].str());
  if (filter == nullptr) {
    return InvalidArgumentError("No filter named '" + args.positional[0].str() + "'.");
  }
  CallArgs rest{ValueList(args.positional.begin() + 1, args.positional.end()), args.keyword};
  for (const Value& item : items) {
    TANDEM_ASSIGN_OR_RETURN(Value mapped, filter(item, rest));
    out.push_back(std::move(mapped));
  }
  return Value::Iterator(std::move(out));
}

template <bool kMax>
StatusOr<Value> FilterMinMax(const Value& v, const CallArgs& args) {
  TANDEM_BIND(kMax ? "max" : "min", "case_sensitive", "attribute");
  TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(v));
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key;
  for (size_t i = 0; i < items.size(); ++i) {
    TANDEM_ASSIGN_OR_RETURN(Value key, LookupAttribute(items[i], a[1]));
    if (!Truthy(a[0])) key = IgnoreCase(key);
    if (i > 0) {
      TANDEM_ASSIGN_OR_RETURN(const int c, Compare(key, best_key, kMax ? ">" : "<"));
      if (kMax ? c <= 0 : c >= 0) continue;
    }
    best = i;
    best_key = key;
  }
  return items[best];
}

StatusOr<Value> FilterReplace(const Value& v, const CallArgs& args) {
  TANDEM_BIND("replace", "old", "new", "count");
  CallArgs replace_args{{Value::String(ToStr(a[0])), Value::String(ToStr(a[1]))}, {}};
  if (Given(a[2]) && !a[2].is_none()) replace_args.positional.push_back(a[2]);
  return CallMethod(Value::String(ToStr(v)), "replace", std::move(replace_args));
}

StatusOr<Value> FilterReverse(const Value& v, const CallArgs& args) {
  TANDEM_BIND("reverse");
  if (v.is_string()) return Slice(v, Value::None(), Value::None(), Value::Int(-1));
  TANDEM_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  std::reverse(items.begin(), items.end());
  // reversed() of a sequence is an iterator; an iterator itself is reversed into a list.
  if (v.kind() == Value::Kind::kIterator) return Value::List(std::move(items));
  return Value::Iterator(std::move(items));
}

// Python's round(x, ndigits): correctly rounded, ties to even (printf rounds the same way).
StatusOr<Value> FilterRound(const Value& v, const CallArgs& args) {
  TANDEM_BIND("round", "precision", "method");
  int64_t precision = 0;
  if (Given(a[0])) {
    TANDEM_ASSIGN_OR_RETURN(precision, IntArgument(a[0], "round", "precision"));
  }
  std::string method = "common";
  if (Given(a[1])) method = ToStr(a[1]);
  if (method != "common" && method != "ceil" && method != "floor") {
    return InvalidArgumentError("method must be common, ceil or floor");
  }
  if (!v.is_number()) {
    if (v.is_undefined()) return InvalidArgumentError(v.undefined_hint());
    return TypeError("type " + TypeName(v) + " doesn't define __round__ method");
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  if (method != "common") {
    const double scaled = v.number() * scale;
    return Value::Float((method == "ceil" ? std::ceil(scaled) : std::floor(scaled)) / scale);
  }
  // Negative precisions round to tens, hundreds, ...: ties go to even, as in Python.
  const double factor = std::pow(10.0, static_cast<double>(-precision));
  if (v.is_int()) {
    if (precision >= 0) return Value::Int(v.int_value());
    return Value::Int(static_cast<int64_t>(std::nearbyint(v.number() / factor) * factor));
  }
  const double x = v.number();
  if (!std::isfinite(x) || precision > 300) return Value::Float(x);
  if (precision < 0) return Value::Float(std::nearbyint(x / factor) * factor);
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(precision), x);
  return Value::Float(std::strtod(buf, nullptr));
}

StatusOr<Value> FilterSafe(const Value& v, const CallArgs& args) {
  TANDEM_BIND("safe");
  return Value::String(ToStr(v), true);
}

// select / reject / selectattr / rejectattr.
template <bool kSelect, bool kAttribute>
StatusOr<Value> FilterSelect(const Value& v, const CallArgs& args) {
  if (!Truthy(v)) return Value::Iterator({});
  TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(v));
  size_t offset = 0;
  Value attribute;
  if (kAttribute) {
    if (args.positional.empty()) {
      return InvalidArgumentError("Missing parameter for attribute name");
    }
    attribute = args.positional[0];
    offset = 1;
  }
  TestFunction test = nullptr;
  CallArgs test_args;
  if (args.positional.size() > offset) {
    if (!args.positional[offset].is_string()) return TypeError("test name must be a string");
    test = FindTest(args.positional[offset].str());
    if (test == nullptr) {
      return InvalidArgumentError("No test named '" + args.positional[offset].str() + "'.");
    }
    test_args.positional.assign(args.positional.begin() + offset + 1, args.positional.end());
    test_args.keyword = args.keyword;
  }
  ValueList out;
  for (const Value& item : items) {
    TANDEM_ASSIGN_OR_RETURN(const Value subject, LookupAttribute(item, attribute));
    bool pass = false;
    if (test != nullptr) {
      TANDEM_ASSIGN_OR_RETURN(pass, test(subject, test_args));
    } else {
      pass = Truthy(subject);
    }
    if (pass == kSelect) out.push_back(item);
  }
  return Value::Iterator(std::move(out));
}

StatusOr<Value> FilterSort(const Value& v, const CallArgs& args) {
  TANDEM_BIND("sort", "reverse", "case_sensitive", "attribute");
  TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(v));
  std::vector<Value> attributes;
  if (a[2].is_string()) {
    TANDEM_ASSIGN_OR_RETURN(const Value parts,
                            CallMethod(a[2], "split", {{Value::String(",")}, {}}));
    attributes = parts.items();
  } else {
    attributes.push_back(a[2]);
  }
  std::vector<std::pair<Value, Value>> keyed;
  for (const Value& item : items) {
    ValueList key;
    for (const Value& attribute : attributes) {
      TANDEM_ASSIGN_OR_RETURN(Value part, LookupAttribute(item, attribute));
      key.push_back(Truthy(a[1]) ? part : IgnoreCase(part));
    }
    keyed.emplace_back(Value::List(std::move(key)), item);
  }
  TANDEM_RETURN_IF_ERROR(StableSortBy(&keyed, Truthy(a[0])));
  ValueList out;
  for (auto& item : keyed) out.push_back(std::move(item.second));
  return Value::List(std::move(out));
}

StatusOr<Value> FilterString(const Value& v, const CallArgs& args) {
  TANDEM_BIND("string");
  return SoftStr(v);
}

StatusOr<Value> FilterSum(const Value& v, const CallArgs& args) {
  TANDEM_BIND("sum", "attribute", "start");
  TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(v));
  Value total = Given(a[1]) ? a[1] : Value::Int(0);
  for (const Value& item : items) {
    TANDEM_ASSIGN_OR_RETURN(const Value term, LookupAttribute(item, a[0]));
    if (total.is_string()) return TypeError("sum() can't sum strings [use ''.join(seq) instead]");
    TANDEM_ASSIGN_OR_RETURN(total, BinaryOperation(BinaryOp::kAdd, total, term));
  }
  return total;
}

StatusOr<Value> FilterTitle(const Value& v, const CallArgs& args) {
  TANDEM_BIND("title");
  const Value text = SoftStr(v);
  // Words start after '-', whitespace, or an opening bracket.
  std::u32string cps = DecodeUtf8(text.str());
  bool word_start = true;
  for (char32_t& c : cps) {
    const bool separator =
        c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || IsPythonSpace(c);
    c = word_start ? ToUpper(c) : ToLower(c);
    word_start = separator;
  }
  return Value::String(EncodeUtf8(cps), text.safe());
}

StatusOr<Value> FilterToJson(const Value& v, const CallArgs& args) {
  TANDEM_BIND("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
  JsonDumpOptions options;
  options.ensure_ascii = Truthy(a[0]);
  options.sort_keys = Truthy(a[3]);
  if (a[1].is_string()) {
    options.indent = a[1].str();
  } else if (a[1].is_int()) {
    options.indent = std::string(static_cast<size_t>(std::max<int64_t>(a[1].int_value(), 0)), ' ');
  } else if (Given(a[1]) && !a[1].is_none()) {
    return TypeError("indent must be an int or a str, not " + TypeName(a[1]));
  }
  if (options.indent) options.item_separator = ",";
  if (Given(a[2]) && !a[2].is_none()) {
    if (!a[2].is_sequence() || a[2].items().size() != 2 || !a[2].items()[0].is_string() ||
        !a[2].items()[1].is_string()) {
      return TypeError("separators must be a pair of strings");
    }
    options.item_separator = a[2].items()[0].str();
    options.key_separator = a[2].items()[1].str();
  }
  TANDEM_ASSIGN_OR_RETURN(std::string json, DumpJson(v, options));
  return Value::String(std::move(json));
}

StatusOr<Value> FilterTrim(const Value& v, const CallArgs& args) {
  TANDEM_BIND("trim", "chars");
  CallArgs strip_args;
  if (Given(a[0])) strip_args.positional.push_back(a[0]);
  return CallMethod(SoftStr(v), "strip", std::move(strip_args));
}

StatusOr<Value> FilterTruncate(const Value& v, const CallArgs& args) {
  TANDEM_BIND("truncate", "length", "killwords", "end", "leeway");
  int64_t length = 255;
  if (Given(a[0])) {
    TANDEM_ASSIGN_OR_RETURN(length, IntArgument(a[0], "truncate", "length"));
  }
  const std::u32string end = DecodeUtf8(Given(a[2]) ? ToStr(a[2]) : "...");
  int64_t leeway = 5;
  if (Given(a[3]) && !a[3].is_none()) {
    TANDEM_ASSIGN_OR_RETURN(leeway, IntArgument(a[3], "truncate", "leeway"));
  }
  const auto end_length = static_cast<int64_t>(end.size());
  if (length < end_length) {
    return InvalidArgumentError("expected length >= " + std::to_string(end_length) + ", got " +
                                std::to_string(length));
  }
  if (leeway < 0) {
    return InvalidArgumentError("expected leeway >= 0, got " + std::to_string(leeway));
  }
  if (!v.is_string()) {
    // jinja2 measures the value itself: a short enough list or dict comes back unchanged.
    TANDEM_ASSIGN_OR_RETURN(const int64_t size, Length(v));
    if (size <= length + leeway) return v;
    return TypeError("truncate expects a string, got " + TypeName(v));
  }
  const std::u32string s = DecodeUtf8(v.str());
  if (static_cast<int64_t>(s.size()) <= length + leeway) return v;
  std::u32string result = s.substr(0, static_cast<size_t>(length - end_length));
  if (!Truthy(a[1])) {
    const size_t space = result.rfind(U' ');
    if (space != std::u32string::npos) result.resize(space);
  }
  return Value::String(EncodeUtf8(result + end));
}

StatusOr<Value> FilterUnique(const Value& v, const CallArgs& args) {
  TANDEM_BIND("unique", "case_sensitive", "attribute");
  TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(v));
  ValueList seen;
  ValueList out;
  for (const Value& item : items) {
    TANDEM_ASSIGN_OR_RETURN(Value key, LookupAttribute(item, a[1]));
    if (!Truthy(a[0])) key = IgnoreCase(key);
    if (key.is_sequence() || key.is_dict()) {
      return TypeError("unhashable type: '" + TypeName(key) + "'");
    }
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equals(s, key); })) {
      continue;
    }
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::Iterator(std::move(out));
}

StatusOr<Value> FilterWordCount(const Value& v, const CallArgs& args) {
  TANDEM_BIND("wordcount");
  int64_t words = 0;
  bool in_word = false;
  for (const char32_t c : DecodeUtf8(ToStr(v))) {
    const bool word_char = (c < 0x80 && (std::isalnum(static_cast<int>(c)) || c == '_')) ||
                           (c >= 0x80 && !IsPythonSpace(c));
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::Int(words);
}

#undef TANDEM_BIND

struct FilterEntry {
  std::string_view name;
  FilterFunction filter;
};

constexpr FilterEntry kFilters[] = {
    {"abs", FilterAbs},
    {"attr", FilterAttr},
    {"batch", FilterBatch},
    {"capitalize", StringMethodFilter<kCapitalize>},
    {"center", FilterCenter},
    {"count", FilterLength},
    {"d", FilterDefault},
    {"default", FilterDefault},
    {"dictsort", FilterDictSort},
    {"e", FilterEscape},
    {"escape", FilterEscape},
    {"first", FilterFirst},
    {"float", FilterFloat},
    {"forceescape", FilterForceEscape},
    {"format", FilterFormat},
    {"indent", FilterIndent},
    {"int", FilterInt},
    {"items", FilterItems},
    {"join", FilterJoin},
    {"last", FilterLast},
    {"length", FilterLength},
    {"list", FilterList},
    {"lower", StringMethodFilter<kLower>},
    {"map", FilterMap},
    {"max", FilterMinMax<true>},
    {"min", FilterMinMax<false>},
    {"reject", FilterSelect<false, false>},
    {"rejectattr", FilterSelect<false, true>},
    {"replace", FilterReplace},
    {"reverse", FilterReverse},
    {"round", FilterRound},
    {"safe", FilterSafe},
    {"select", FilterSelect<true, false>},
    {"selectattr", FilterSelect<true, true>},
    {"sort", FilterSort},
    {"string", FilterString},
    {"sum", FilterSum},
    {"title", FilterTitle},
    {"tojson", FilterToJson},
    {"trim", FilterTrim},
    {"truncate", FilterTruncate},
    {"unique", FilterUnique},
    {"upper", StringMethodFilter<kUpper>},
    {"wordcount", FilterWordCount},
};

// jinja2 filters left out: rarely if ever used by chat templates.
constexpr std::string_view kUnsupportedFilters[] = {
    "filesizeformat", "groupby",   "pprint", "random",   "slice",
    "striptags",      "urlencode", "urlize", "wordwrap", "xmlattr"};

}  // namespace

FilterFunction FindFilter(std::string_view name) {
  for (const FilterEntry& entry : kFilters) {
    if (entry.name == name) return entry.filter;
  }
  return nullptr;
}

bool IsJinjaFilter(std::string_view name) {
  return FindFilter(name) != nullptr ||
         std::find(std::begin(kUnsupportedFilters), std::end(kUnsupportedFilters), name) !=
             std::end(kUnsupportedFilters);
}

}  // namespace tandem::jinja
