#include "model/jinja/value.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "model/jinja/utf8.h"

namespace tandem::jinja {

const Value* Dict::Find(const Value& key) const {
  for (const auto& [k, v] : items_) {
    if (Equals(k, key)) return &v;
  }
  return nullptr;
}

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [k, v] : items_) {
    if (k.is_string() && k.str() == key) return &v;
  }
  return nullptr;
}

void Dict::Set(Value key, Value value) {
  for (auto& [k, v] : items_) {
    if (Equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  items_.emplace_back(std::move(key), std::move(value));
}

Value Value::Undefined(std::string hint) {
  Value v(Kind::kUndefined);
  v.data_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}

Value Value::Bool(bool b) {
  Value v(Kind::kBool);
  v.data_ = b;
  return v;
}

Value Value::Int(int64_t i) {
  Value v(Kind::kInt);
  v.data_ = i;
  return v;
}

Value Value::Float(double f) {
  Value v(Kind::kFloat);
  v.data_ = f;
  return v;
}

Value Value::String(std::string s, bool safe) {
  Value v(Kind::kString);
  v.data_ = std::make_shared<const std::string>(std::move(s));
  v.safe_ = safe;
  return v;
}

Value Value::List(ValueList items) {
  Value v(Kind::kList);
  v.data_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}

Value Value::Tuple(ValueList items) {
  Value v(Kind::kTuple);
  v.data_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}

Value Value::Iterator(ValueList items) {
  Value v(Kind::kIterator);
  v.data_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}

Value Value::FromDict(Dict dict) {
  Value v(Kind::kDict);
  v.data_ = std::make_shared<const Dict>(std::move(dict));
  return v;
}

Value Value::FromObject(std::shared_ptr<Object> object) {
  Value v(Kind::kObject);
  v.data_ = std::move(object);
  return v;
}

Value Value::FromCallable(std::string name, std::function<StatusOr<Value>(CallArgs args)> function,
                          bool is_macro) {
  Value v(Kind::kCallable);
  v.data_ =
      std::make_shared<const Callable>(Callable{std::move(name), std::move(function), is_macro});
  return v;
}

namespace {

constexpr int kMaxJsonDepth = 512;

// Null when `json` nests deeper than kMaxJsonDepth.
template <typename Json>
std::optional<Value> ConvertJson(const Json& json, int depth) {
  if (depth > kMaxJsonDepth) return std::nullopt;
  switch (json.type()) {
    case Json::value_t::null:
      return Value::None();
    case Json::value_t::boolean:
      return Value::Bool(json.template get<bool>());
    case Json::value_t::number_integer:
      return Value::Int(json.template get<int64_t>());
    case Json::value_t::number_unsigned: {
      const uint64_t u = json.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::Float(static_cast<double>(u));
      return Value::Int(static_cast<int64_t>(u));
    }
    case Json::value_t::number_float:
      return Value::Float(json.template get<double>());
    case Json::value_t::string:
      return Value::String(json.template get_ref<const std::string&>());
    case Json::value_t::array: {
      ValueList items;
      items.reserve(json.size());
      for (const auto& item : json) {
        std::optional<Value> v = ConvertJson(item, depth + 1);
        if (!v) return std::nullopt;
        items.push_back(std::move(*v));
      }
      return Value::List(std::move(items));
    }
    case Json::value_t::object: {
      Dict dict;
      for (auto it = json.begin(); it != json.end(); ++it) {
        std::optional<Value> v = ConvertJson(it.value(), depth + 1);
        if (!v) return std::nullopt;
        dict.Set(Value::String(it.key()), std::move(*v));
      }
      return Value::FromDict(std::move(dict));
    }
    default:  // binary, discarded
      return Value::None();
  }
}

template <typename Json>
StatusOr<Value> FromJsonChecked(const Json& json) {
  std::optional<Value> v = ConvertJson(json, 0);
  if (!v) {
    return InvalidArgumentError("JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                                " levels");
  }
  return std::move(*v);
}

// Code points Python's str.isprintable() rejects, for the ranges chat text meets: controls,
// separators other than the space, format characters, surrogates and private use.
bool IsPrintable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F)) return false;
  if ((c >= 0x205F && c <= 0x206F) || c == 0x3000 || c == 0xFEFF) return false;
  if ((c >= 0xD800 && c <= 0xF8FF) || (c >= 0xFFF9 && c <= 0xFFFB)) return false;
  if (c >= 0xF0000) return false;
  return true;
}

std::string StringRepr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (const char32_t c : DecodeUtf8(s)) {
    if (c == '\\' || c == static_cast<char32_t>(quote)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == ' ' || IsPrintable(c)) {
      AppendUtf8(c, &out);
    } else {
      char buf[16];
      if (c < 0x100) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(c));
      } else if (c < 0x10000) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", static_cast<unsigned>(c));
      }
      out += buf;
    }
  }
  out += quote;
  return out;
}

void AppendSequenceRepr(const ValueList& items, std::string* out) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) *out += ", ";
    *out += Repr(items[i]);
  }
}

std::string DictRepr(const Dict& dict) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : dict.items()) {
    if (!first) out += ", ";
    first = false;
    out += Repr(k) + ": " + Repr(v);
  }
  return out + "}";
}

int Sign(double d) { return d < 0 ? -1 : (d > 0 ? 1 : 0); }

}  // namespace

StatusOr<Value> Value::FromJson(const nlohmann::json& json) { return FromJsonChecked(json); }
StatusOr<Value> Value::FromJson(const nlohmann::ordered_json& json) {
  return FromJsonChecked(json);
}

int64_t Value::int_value() const {
  return kind_ == Kind::kBool ? (std::get<bool>(data_) ? 1 : 0) : std::get<int64_t>(data_);
}

double Value::number() const {
  return kind_ == Kind::kFloat ? std::get<double>(data_) : static_cast<double>(int_value());
}

const std::string& Value::undefined_hint() const {
  static const std::string* const missing_hint = new std::string("a required value is undefined");
  const StringPtr* hint = std::get_if<StringPtr>(&data_);
  return hint != nullptr ? **hint : *missing_hint;
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.bool_value();
    case Value::Kind::kInt:
      return v.int_value() != 0;
    case Value::Kind::kFloat:
      return v.number() != 0.0;
    case Value::Kind::kString:
      return !v.str().empty();
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      return !v.items().empty();
    case Value::Kind::kDict:
      return v.dict().size() != 0;
    case Value::Kind::kIterator:
    case Value::Kind::kObject:
    case Value::Kind::kCallable:
      return true;
  }
  return false;
}

std::string TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return v.safe() ? "Markup" : "str";
    case Value::Kind::kList:
      return "list";
    case Value::Kind::kTuple:
      return "tuple";
    case Value::Kind::kIterator:
      return "generator";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kObject:
      return v.object().type == Object::Type::kNamespace ? "Namespace" : "LoopContext";
    case Value::Kind::kCallable:
      return v.callable().is_macro ? "Macro" : "function";
  }
  return "object";
}

std::string ObjectTypeDescription(const Value& v) {
  if (v.is_none()) return "None";
  if (v.kind() == Value::Kind::kObject) {
    return v.object().type == Object::Type::kNamespace ? "jinja2.utils.Namespace object"
                                                       : "jinja2.runtime.LoopContext object";
  }
  if (v.is_string() && v.safe()) return "markupsafe.Markup object";
  return TypeName(v) + " object";
}

std::string FormatFloat(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
  if (f == 0) return std::signbit(f) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's repr layout: positional for exponents -4..15.
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::scientific);
  std::string sci(buf, result.ptr);
  const size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::atoi(sci.c_str() + e + 1);
  std::string sign;
  if (mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (const char c : mantissa) {
    if (c != '.') digits += c;
  }
  if (exponent < -4 || exponent >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exponent < 0 ? '-' : '+',
                  std::abs(exponent));
    return out + exp_buf;
  }
  if (exponent < 0) return sign + "0." + std::string(-exponent - 1, '0') + digits;
  const size_t int_len = static_cast<size_t>(exponent) + 1;
  if (digits.size() <= int_len) {
    return sign + digits + std::string(int_len - digits.size(), '0') + ".0";
  }
  return sign + digits.substr(0, int_len) + "." + digits.substr(int_len);
}

std::string ToStr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kString:
      return v.str();
    default:
      return Repr(v);
  }
}

std::string Repr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return v.bool_value() ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(v.int_value());
    case Value::Kind::kFloat:
      return FormatFloat(v.number());
    case Value::Kind::kString:
      return v.safe() ? "Markup(" + StringRepr(v.str()) + ")" : StringRepr(v.str());
    case Value::Kind::kList: {
      std::string out = "[";
      AppendSequenceRepr(v.items(), &out);
      return out + "]";
    }
    case Value::Kind::kTuple: {
      std::string out = "(";
      AppendSequenceRepr(v.items(), &out);
      return out + (v.items().size() == 1 ? ",)" : ")");
    }
    case Value::Kind::kIterator:
      return "<generator object>";
    case Value::Kind::kDict:
      return DictRepr(v.dict());
    case Value::Kind::kObject: {
      const Object& object = v.object();
      if (object.type == Object::Type::kNamespace) {
        return "<Namespace " + DictRepr(object.attributes) + ">";
      }
      return "<LoopContext " + std::to_string(object.loop_index + 1) + "/" +
             std::to_string(object.loop_items->size()) + ">";
    }
    case Value::Kind::kCallable:
      return v.callable().is_macro ? "<Macro '" + v.callable().name + "'>"
                                   : "<function " + v.callable().name + ">";
  }
  return "";
}

Value LoopAttribute(const Object& loop, std::string_view name) {
  const ValueList& items = *loop.loop_items;
  const size_t i = loop.loop_index;
  const auto n = static_cast<int64_t>(items.size());
  const auto index = static_cast<int64_t>(i);
  if (name == "index") return Value::Int(index + 1);
  if (name == "index0") return Value::Int(index);
  if (name == "revindex") return Value::Int(n - index);
  if (name == "revindex0") return Value::Int(n - index - 1);
  if (name == "first") return Value::Bool(i == 0);
  if (name == "last") return Value::Bool(index == n - 1);
  if (name == "length") return Value::Int(n);
  if (name == "depth") return Value::Int(1);
  if (name == "depth0") return Value::Int(0);
  if (name == "previtem") {
    return i > 0 ? items[i - 1] : Value::Undefined("there is no previous item");
  }
  if (name == "nextitem") {
    return index + 1 < n ? items[i + 1] : Value::Undefined("there is no next item");
  }
  if (name == "cycle") {
    return Value::FromCallable("cycle", [index](CallArgs args) -> StatusOr<Value> {
      if (args.positional.empty()) return InvalidArgumentError("no items for cycling given");
      const auto count = static_cast<int64_t>(args.positional.size());
      return args.positional[static_cast<size_t>(index % count)];
    });
  }
  if (name == "changed") {
    std::shared_ptr<Value> last = loop.loop_changed;
    return Value::FromCallable("changed", [last](CallArgs args) -> StatusOr<Value> {
      Value current = Value::List(std::move(args.positional));
      if (!last->is_undefined() && Equals(*last, current)) return Value::Bool(false);
      *last = std::move(current);
      return Value::Bool(true);
    });
  }
  return Value::Undefined("'jinja2.runtime.LoopContext object' has no attribute '" +
                          std::string(name) + "'");
}

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.int_value() == b.int_value();
    return a.number() == b.number();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.str() == b.str();
    case Value::Kind::kList:
    case Value::Kind::kTuple: {
      const ValueList& x = a.items();
      const ValueList& y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!Equals(x[i], y[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict().size() != b.dict().size()) return false;
      for (const auto& [k, v] : a.dict().items()) {
        const Value* other = b.dict().Find(k);
        if (other == nullptr || !Equals(v, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kIterator:
      return &a.items() == &b.items();
    case Value::Kind::kObject:
      return &a.object() == &b.object();
    case Value::Kind::kCallable:
      return &a.callable() == &b.callable();
    default:
      return false;
  }
}

StatusOr<int> Compare(const Value& a, const Value& b, std::string_view op) {
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) {
      return a.int_value() < b.int_value() ? -1 : (a.int_value() > b.int_value() ? 1 : 0);
    }
    return Sign(a.number() - b.number());
  }
  if (a.is_string() && b.is_string()) {
    // UTF-8 byte order is code point order.
    const int c = a.str().compare(b.str());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.kind() == b.kind() && a.is_sequence()) {
    const ValueList& x = a.items();
    const ValueList& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (Equals(x[i], y[i])) continue;
      return Compare(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  if (a.is_undefined()) return InvalidArgumentError(a.undefined_hint());
  if (b.is_undefined()) return InvalidArgumentError(b.undefined_hint());
  return TypeError("'" + std::string(op) + "' not supported between instances of '" + TypeName(a) +
                   "' and '" + TypeName(b) + "'");
}

}  // namespace tandem::jinja
