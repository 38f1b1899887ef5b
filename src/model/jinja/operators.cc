#include "model/jinja/operators.h"

#include <cmath>
#include <limits>

#include "common/status_macros.h"
#include "model/jinja/formatting.h"
#include "model/jinja/methods.h"
#include "model/jinja/utf8.h"

namespace tandem::jinja {
namespace {

Status UndefinedError(const Value& v) { return InvalidArgumentError(v.undefined_hint()); }

Status OperandError(std::string_view op, const Value& a, const Value& b) {
  return TypeError("unsupported operand type(s) for " + std::string(op) + ": '" + TypeName(a) +
                   "' and '" + TypeName(b) + "'");
}

// Python ints are unbounded; ours stop at 64 bits.
template <typename Op>
StatusOr<Value> CheckedInt(int64_t a, int64_t b, Op op) {
  int64_t result = 0;
  if (op(a, b, &result)) return InvalidArgumentError("integer overflow");
  return Value::Int(result);
}

bool AddOverflow(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool SubOverflow(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
bool MulOverflow(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

// Python's float floor division and modulo (the result takes the divisor's sign).
void FloatDivMod(double x, double y, double* div_out, double* mod_out) {
  double mod = std::fmod(x, y);
  double div = (x - mod) / y;
  if (mod != 0) {
    if ((y < 0) != (mod < 0)) {
      mod += y;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, y);
  }
  double floor_div;
  if (div != 0) {
    floor_div = std::floor(div);
    if (div - floor_div > 0.5) floor_div += 1.0;
  } else {
    floor_div = std::copysign(0.0, x / y);
  }
  *div_out = floor_div;
  *mod_out = mod;
}

StatusOr<Value> Repeat(const Value& sequence, int64_t count) {
  constexpr int64_t kMaxSize = int64_t{1} << 28;  // refuse absurd repetitions
  if (count < 0) count = 0;
  if (sequence.is_string()) {
    if (count * static_cast<int64_t>(sequence.str().size()) > kMaxSize) {
      return InvalidArgumentError("repeated string too large");
    }
    std::string out;
    for (int64_t i = 0; i < count; ++i) out += sequence.str();
    return Value::String(std::move(out), sequence.safe());
  }
  if (count * static_cast<int64_t>(sequence.items().size()) > kMaxSize) {
    return InvalidArgumentError("repeated sequence too large");
  }
  ValueList out;
  for (int64_t i = 0; i < count; ++i) {
    out.insert(out.end(), sequence.items().begin(), sequence.items().end());
  }
  return sequence.kind() == Value::Kind::kList ? Value::List(std::move(out))
                                               : Value::Tuple(std::move(out));
}

StatusOr<Value> Add(const Value& a, const Value& b) {
  if (a.is_int() && b.is_int()) {
    return CheckedInt(a.int_value(), b.int_value(), AddOverflow);
  }
  if (a.is_number() && b.is_number()) return Value::Float(a.number() + b.number());
  if (a.is_string() && b.is_string()) {
    if (a.safe() || b.safe()) return Value::String(EscapedStr(a) + EscapedStr(b), true);
    return Value::String(a.str() + b.str());
  }
  if (a.kind() == b.kind() && a.is_sequence()) {
    ValueList out = a.items();
    out.insert(out.end(), b.items().begin(), b.items().end());
    return a.kind() == Value::Kind::kList ? Value::List(std::move(out))
                                          : Value::Tuple(std::move(out));
  }
  if (a.is_string() && !b.is_undefined()) {
    return TypeError("can only concatenate str (not \"" + TypeName(b) + "\") to str");
  }
  if (a.kind() == Value::Kind::kList && !b.is_undefined()) {
    return TypeError("can only concatenate list (not \"" + TypeName(b) + "\") to list");
  }
  return OperandError("+", a, b);
}

StatusOr<Value> Multiply(const Value& a, const Value& b) {
  if (a.is_int() && b.is_int()) {
    return CheckedInt(a.int_value(), b.int_value(), MulOverflow);
  }
  if (a.is_number() && b.is_number()) return Value::Float(a.number() * b.number());
  const bool a_seq = a.is_string() || a.is_sequence();
  const bool b_seq = b.is_string() || b.is_sequence();
  if (a_seq && b.is_int()) return Repeat(a, b.int_value());
  if (b_seq && a.is_int()) return Repeat(b, a.int_value());
  if ((a_seq && b.kind() == Value::Kind::kFloat) || (b_seq && a.kind() == Value::Kind::kFloat)) {
    return TypeError("can't multiply sequence by non-int of type 'float'");
  }
  return OperandError("*", a, b);
}

StatusOr<Value> Power(const Value& a, const Value& b) {
  if (a.is_int() && b.is_int() && b.int_value() >= 0) {
    int64_t result = 1;
    int64_t base = a.int_value();
    for (int64_t e = b.int_value(); e > 0; e >>= 1) {
      if (e & 1) {
        if (__builtin_mul_overflow(result, base, &result)) {
          return InvalidArgumentError("integer overflow");
        }
      }
      if (e > 1 && __builtin_mul_overflow(base, base, &base)) {
        return InvalidArgumentError("integer overflow");
      }
    }
    return Value::Int(result);
  }
  if (a.is_number() && b.is_number()) {
    if (a.number() == 0 && b.number() < 0) {
      return InvalidArgumentError("0.0 cannot be raised to a negative power");
    }
    const double result = std::pow(a.number(), b.number());
    if (std::isinf(result) && std::isfinite(a.number()) && std::isfinite(b.number())) {
      return InvalidArgumentError("(34, 'Numerical result out of range')");
    }
    return Value::Float(result);
  }
  return OperandError("** or pow()", a, b);
}

StatusOr<Value> DivMod(BinaryOp op, const Value& a, const Value& b) {
  const std::string_view spelling =
      op == BinaryOp::kDiv ? "/" : (op == BinaryOp::kMod ? "%" : "//");
  if (!a.is_number() || !b.is_number()) return OperandError(spelling, a, b);
  if (op == BinaryOp::kDiv) {
    if (b.number() == 0) return InvalidArgumentError("division by zero");
    return Value::Float(a.number() / b.number());
  }
  if (a.is_int() && b.is_int()) {
    const int64_t x = a.int_value();
    const int64_t y = b.int_value();
    if (y == 0) return InvalidArgumentError("integer division or modulo by zero");
    if (x == std::numeric_limits<int64_t>::min() && y == -1) {
      return op == BinaryOp::kMod ? Value::Int(0)
                                  : StatusOr<Value>(InvalidArgumentError("integer overflow"));
    }
    int64_t q = x / y;
    int64_t r = x % y;
    if (r != 0 && ((r < 0) != (y < 0))) {
      --q;
      r += y;
    }
    return op == BinaryOp::kMod ? Value::Int(r) : Value::Int(q);
  }
  if (b.number() == 0) {
    return InvalidArgumentError(op == BinaryOp::kMod ? "float modulo"
                                                     : "float floor division by zero");
  }
  double div = 0;
  double mod = 0;
  FloatDivMod(a.number(), b.number(), &div, &mod);
  return Value::Float(op == BinaryOp::kMod ? mod : div);
}

Value MissingAttribute(const Value& obj, std::string_view name) {
  return Value::Undefined("'" + ObjectTypeDescription(obj) + "' has no attribute '" +
                          std::string(name) + "'");
}

Value UnsafeAttribute(const Value& obj, std::string_view name) {
  return Value::Undefined("access to attribute '" + std::string(name) + "' of '" + TypeName(obj) +
                          "' object is unsafe.");
}

// Attribute lookup after the dict-key and namespace cases: Python methods.
Value MethodOrMissing(const Value& obj, std::string_view name) {
  Value method;
  switch (FindMethod(obj, name, &method)) {
    case MethodLookup::kFound:
      return method;
    case MethodLookup::kUnsafe:
      return UnsafeAttribute(obj, name);
    case MethodLookup::kMissing:
      break;
  }
  if (!name.empty() && name[0] == '_' && !obj.is_dict()) return UnsafeAttribute(obj, name);
  return MissingAttribute(obj, name);
}

// Python's slice.indices(): clamps a bound for a sequence of `length`.
int64_t ClampBound(int64_t bound, int64_t length, int64_t step) {
  if (bound < 0) {
    bound += length;
    if (bound < 0) bound = step < 0 ? -1 : 0;
  } else if (bound >= length) {
    bound = step < 0 ? length - 1 : length;
  }
  return bound;
}

}  // namespace

std::string EscapeHtml(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&#39;";
        break;
      case '"':
        out += "&#34;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapedStr(const Value& v) {
  if (v.is_string() && v.safe()) return v.str();
  return EscapeHtml(ToStr(v));
}

StatusOr<Value> BinaryOperation(BinaryOp op, const Value& a, const Value& b) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  switch (op) {
    case BinaryOp::kAdd:
      return Add(a, b);
    case BinaryOp::kSub:
      if (a.is_int() && b.is_int()) {
        return CheckedInt(a.int_value(), b.int_value(), SubOverflow);
      }
      if (a.is_number() && b.is_number()) return Value::Float(a.number() - b.number());
      return OperandError("-", a, b);
    case BinaryOp::kMul:
      return Multiply(a, b);
    case BinaryOp::kPow:
      return Power(a, b);
    case BinaryOp::kMod:
      if (a.is_string()) return PercentFormat(a, b);
      return DivMod(op, a, b);
    case BinaryOp::kDiv:
    case BinaryOp::kFloorDiv:
      return DivMod(op, a, b);
  }
  return InternalError("unknown operator");
}

StatusOr<Value> Negate(const Value& v) {
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_int()) {
    return CheckedInt(0, v.int_value(), SubOverflow);
  }
  if (v.kind() == Value::Kind::kFloat) return Value::Float(-v.number());
  return TypeError("bad operand type for unary -: '" + TypeName(v) + "'");
}

StatusOr<Value> UnaryPlus(const Value& v) {
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_int()) return Value::Int(v.int_value());
  if (v.kind() == Value::Kind::kFloat) return v;
  return TypeError("bad operand type for unary +: '" + TypeName(v) + "'");
}

StatusOr<bool> CompareValues(CompareOp op, const Value& a, const Value& b) {
  switch (op) {
    case CompareOp::kEq:
      return Equals(a, b);
    case CompareOp::kNe:
      return !Equals(a, b);
    case CompareOp::kIn:
      return Contains(b, a);
    case CompareOp::kNotIn: {
      TANDEM_ASSIGN_OR_RETURN(const bool in, Contains(b, a));
      return !in;
    }
    default:
      break;
  }
  static constexpr std::string_view kSpelling[] = {"==", "!=", "<", "<=", ">", ">="};
  TANDEM_ASSIGN_OR_RETURN(const int c, Compare(a, b, kSpelling[static_cast<int>(op)]));
  switch (op) {
    case CompareOp::kLt:
      return c < 0;
    case CompareOp::kLe:
      return c <= 0;
    case CompareOp::kGt:
      return c > 0;
    default:
      return c >= 0;
  }
}

StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        return TypeError("'in <string>' requires string as left operand, not " + TypeName(item));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
    case Value::Kind::kTuple:
    case Value::Kind::kIterator:
      for (const Value& v : container.items()) {
        if (Equals(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      if (item.kind() == Value::Kind::kList || item.is_dict()) {
        return TypeError("unhashable type: '" + TypeName(item) + "'");
      }
      return container.dict().Find(item) != nullptr;
    default:
      return TypeError("argument of type '" + TypeName(container) + "' is not iterable");
  }
}

StatusOr<Value> GetAttr(const Value& obj, std::string_view name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      // Undefined raises AttributeError for dunder names, which jinja2 turns into Undefined.
      if (name.size() > 1 && name.substr(0, 2) == "__") {
        return Value::Undefined(obj.undefined_hint());
      }
      return UndefinedError(obj);
    case Value::Kind::kDict: {
      Value method;
      const MethodLookup lookup = FindMethod(obj, name, &method);
      if (lookup == MethodLookup::kFound) return method;
      if (lookup == MethodLookup::kUnsafe) return UnsafeAttribute(obj, name);
      if (const Value* value = obj.dict().Find(name)) return *value;
      return MissingAttribute(obj, name);
    }
    case Value::Kind::kObject:
      if (obj.object().type == Object::Type::kLoop) return LoopAttribute(obj.object(), name);
      if (const Value* value = obj.object().attributes.Find(name)) return *value;
      return MissingAttribute(obj, name);
    default:
      return MethodOrMissing(obj, name);
  }
}

StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_dict()) {
    if (const Value* value = obj.dict().Find(key)) return *value;
  } else if ((obj.is_sequence() || obj.is_string()) && key.is_int()) {
    int64_t index = key.int_value();
    if (obj.is_string()) {
      const std::u32string cps = DecodeUtf8(obj.str());
      const auto length = static_cast<int64_t>(cps.size());
      if (index < 0) index += length;
      if (index >= 0 && index < length) {
        std::string out;
        AppendUtf8(cps[static_cast<size_t>(index)], &out);
        return Value::String(std::move(out), obj.safe());
      }
    } else {
      const auto length = static_cast<int64_t>(obj.items().size());
      if (index < 0) index += length;
      if (index >= 0 && index < length) return obj.items()[static_cast<size_t>(index)];
    }
  } else if (obj.kind() == Value::Kind::kObject && key.is_string()) {
    return GetAttr(obj, key.str());
  }
  if (key.is_string()) return MethodOrMissing(obj, key.str());
  return Value::Undefined(ObjectTypeDescription(obj) + " has no element " + Repr(key));
}

StatusOr<Value> Slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) return UndefinedError(obj);
  // Slices compile to Python's own subscription in jinja2, so its TypeErrors surface.
  if (!obj.is_string() && !obj.is_sequence()) {
    if (obj.is_dict()) return TypeError("unhashable type: 'slice'");
    return TypeError("'" + TypeName(obj) + "' object is not subscriptable");
  }
  for (const Value* bound : {&start, &stop, &step}) {
    if (bound->is_undefined()) return UndefinedError(*bound);
    if (!bound->is_none() && !bound->is_int()) {
      return TypeError("slice indices must be integers or None or have an __index__ method");
    }
  }
  const int64_t step_value = step.is_int() ? step.int_value() : 1;
  if (step_value == 0) return InvalidArgumentError("slice step cannot be zero");
  const auto given = [](const Value& v) { return v.is_int(); };
  const std::u32string cps = obj.is_string() ? DecodeUtf8(obj.str()) : std::u32string();
  const auto length = static_cast<int64_t>(obj.is_string() ? cps.size() : obj.items().size());
  const int64_t first = given(start) ? ClampBound(start.int_value(), length, step_value)
                                     : (step_value < 0 ? length - 1 : 0);
  const int64_t last = given(stop) ? ClampBound(stop.int_value(), length, step_value)
                                   : (step_value < 0 ? -1 : length);
  std::u32string text;
  ValueList items;
  for (int64_t i = first; step_value > 0 ? i < last : i > last; i += step_value) {
    if (obj.is_string()) {
      text.push_back(cps[static_cast<size_t>(i)]);
    } else {
      items.push_back(obj.items()[static_cast<size_t>(i)]);
    }
  }
  if (obj.is_string()) return Value::String(EncodeUtf8(text), obj.safe());
  return obj.kind() == Value::Kind::kList ? Value::List(std::move(items))
                                          : Value::Tuple(std::move(items));
}

StatusOr<ValueList> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return ValueList();
    case Value::Kind::kList:
    case Value::Kind::kTuple:
    case Value::Kind::kIterator:
      return v.items();
    case Value::Kind::kDict: {
      ValueList keys;
      for (const auto& item : v.dict().items()) keys.push_back(item.first);
      return keys;
    }
    case Value::Kind::kString: {
      ValueList chars;
      for (const char32_t c : DecodeUtf8(v.str())) {
        std::string s;
        AppendUtf8(c, &s);
        chars.push_back(Value::String(std::move(s)));  // Markup does not wrap __iter__
      }
      return chars;
    }
    default:
      return TypeError("'" + TypeName(v) + "' object is not iterable");
  }
}

StatusOr<int64_t> Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return static_cast<int64_t>(CodePointCount(v.str()));
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      return static_cast<int64_t>(v.items().size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(v.dict().size());
    default:
      return TypeError("object of type '" + TypeName(v) + "' has no len()");
  }
}

}  // namespace tandem::jinja
