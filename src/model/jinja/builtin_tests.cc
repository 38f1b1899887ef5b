// jinja2's tests (`x is defined`, `x is divisibleby 3`, ...).
#include <algorithm>
#include <string>

#include "common/status_macros.h"
#include "model/jinja/arguments.h"
#include "model/jinja/builtins.h"
#include "model/jinja/operators.h"
#include "model/jinja/utf8.h"

namespace tandem::jinja {
namespace {

StatusOr<ValueList> NoArguments(std::string_view test, const CallArgs& args) {
  return BindArguments(test, args, {});
}

StatusOr<Value> OneArgument(std::string_view test, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments(test, args, {"other"}));
  return a[0];
}

// `value % divisor == 0` (or == 1) with Python's operators.
StatusOr<bool> ModuloIs(const Value& value, const Value& divisor, int64_t expected) {
  TANDEM_ASSIGN_OR_RETURN(const Value rest, BinaryOperation(BinaryOp::kMod, value, divisor));
  return Equals(rest, Value::Int(expected));
}

StatusOr<bool> TestOdd(const Value& v, const CallArgs& args) {
  TANDEM_RETURN_IF_ERROR(NoArguments("odd", args).status());
  return ModuloIs(v, Value::Int(2), 1);
}

StatusOr<bool> TestEven(const Value& v, const CallArgs& args) {
  TANDEM_RETURN_IF_ERROR(NoArguments("even", args).status());
  return ModuloIs(v, Value::Int(2), 0);
}

StatusOr<bool> TestDivisibleBy(const Value& v, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("divisibleby", args, {"num"}));
  return ModuloIs(v, a[0], 0);
}

#define TANDEM_JINJA_SIMPLE_TEST(function, name, expr)            \
  StatusOr<bool> function(const Value& v, const CallArgs& args) { \
    TANDEM_RETURN_IF_ERROR(NoArguments(name, args).status());     \
    return (expr);                                                \
  }

TANDEM_JINJA_SIMPLE_TEST(TestDefined, "defined", !v.is_undefined())
TANDEM_JINJA_SIMPLE_TEST(TestUndefined, "undefined", v.is_undefined())
TANDEM_JINJA_SIMPLE_TEST(TestNone, "none", v.is_none())
TANDEM_JINJA_SIMPLE_TEST(TestBoolean, "boolean", v.kind() == Value::Kind::kBool)
TANDEM_JINJA_SIMPLE_TEST(TestFalse, "false", v.kind() == Value::Kind::kBool && !v.bool_value())
TANDEM_JINJA_SIMPLE_TEST(TestTrue, "true", v.kind() == Value::Kind::kBool && v.bool_value())
TANDEM_JINJA_SIMPLE_TEST(TestInteger, "integer", v.kind() == Value::Kind::kInt)
TANDEM_JINJA_SIMPLE_TEST(TestFloat, "float", v.kind() == Value::Kind::kFloat)
TANDEM_JINJA_SIMPLE_TEST(TestString, "string", v.is_string())
TANDEM_JINJA_SIMPLE_TEST(TestMapping, "mapping", v.is_dict())
TANDEM_JINJA_SIMPLE_TEST(TestNumber, "number", v.is_number())
TANDEM_JINJA_SIMPLE_TEST(TestEscaped, "escaped", v.is_string() && v.safe())
// Undefined has a length and __getitem__, is iterable and callable in jinja2.
TANDEM_JINJA_SIMPLE_TEST(TestSequence, "sequence",
                         v.is_string() || v.is_sequence() || v.is_dict() || v.is_undefined())
TANDEM_JINJA_SIMPLE_TEST(TestIterable, "iterable",
                         v.is_string() || v.is_sequence() || v.is_dict() || v.is_undefined() ||
                             v.kind() == Value::Kind::kIterator)
TANDEM_JINJA_SIMPLE_TEST(TestCallable, "callable",
                         v.kind() == Value::Kind::kCallable || v.is_undefined())

#undef TANDEM_JINJA_SIMPLE_TEST

template <bool kUpper>
StatusOr<bool> TestCase(const Value& v, const CallArgs& args) {
  TANDEM_RETURN_IF_ERROR(NoArguments(kUpper ? "upper" : "lower", args).status());
  bool any_cased = false;
  for (const char32_t c : DecodeUtf8(ToStr(v))) {
    if ((kUpper ? ToUpper(c) : ToLower(c)) != c) return false;
    any_cased = any_cased || IsCased(c);
  }
  return any_cased;
}

StatusOr<bool> TestSameAs(const Value& v, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const Value other, OneArgument("sameas", args));
  if (v.kind() != other.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kNone:
    case Value::Kind::kUndefined:
      return v.is_none();
    case Value::Kind::kBool:
    case Value::Kind::kInt:
      // CPython caches small integers, so equal ones are the same object.
      return v.int_value() == other.int_value() && v.int_value() >= -5 && v.int_value() <= 256;
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      return &v.items() == &other.items();
    case Value::Kind::kDict:
      return &v.dict() == &other.dict();
    case Value::Kind::kString:
      return &v.str() == &other.str();
    default:
      return Equals(v, other);
  }
}

StatusOr<bool> TestIn(const Value& v, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const Value seq, OneArgument("in", args));
  return Contains(seq, v);
}

template <CompareOp kOp>
StatusOr<bool> TestCompare(const Value& v, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const Value other, OneArgument("compare", args));
  return CompareValues(kOp, v, other);
}

StatusOr<bool> TestFilter(const Value& v, const CallArgs& args) {
  TANDEM_RETURN_IF_ERROR(NoArguments("filter", args).status());
  return v.is_string() && FindFilter(v.str()) != nullptr;
}

StatusOr<bool> TestTest(const Value& v, const CallArgs& args) {
  TANDEM_RETURN_IF_ERROR(NoArguments("test", args).status());
  return v.is_string() && FindTest(v.str()) != nullptr;
}

struct TestEntry {
  std::string_view name;
  TestFunction test;
};

constexpr TestEntry kTests[] = {
    {"odd", TestOdd},
    {"even", TestEven},
    {"divisibleby", TestDivisibleBy},
    {"defined", TestDefined},
    {"undefined", TestUndefined},
    {"filter", TestFilter},
    {"test", TestTest},
    {"none", TestNone},
    {"boolean", TestBoolean},
    {"false", TestFalse},
    {"true", TestTrue},
    {"integer", TestInteger},
    {"float", TestFloat},
    {"lower", TestCase<false>},
    {"upper", TestCase<true>},
    {"string", TestString},
    {"mapping", TestMapping},
    {"number", TestNumber},
    {"sequence", TestSequence},
    {"iterable", TestIterable},
    {"callable", TestCallable},
    {"sameas", TestSameAs},
    {"escaped", TestEscaped},
    {"in", TestIn},
    {"==", TestCompare<CompareOp::kEq>},
    {"eq", TestCompare<CompareOp::kEq>},
    {"equalto", TestCompare<CompareOp::kEq>},
    {"!=", TestCompare<CompareOp::kNe>},
    {"ne", TestCompare<CompareOp::kNe>},
    {">", TestCompare<CompareOp::kGt>},
    {"gt", TestCompare<CompareOp::kGt>},
    {"greaterthan", TestCompare<CompareOp::kGt>},
    {">=", TestCompare<CompareOp::kGe>},
    {"ge", TestCompare<CompareOp::kGe>},
    {"<", TestCompare<CompareOp::kLt>},
    {"lt", TestCompare<CompareOp::kLt>},
    {"lessthan", TestCompare<CompareOp::kLt>},
    {"<=", TestCompare<CompareOp::kLe>},
    {"le", TestCompare<CompareOp::kLe>},
};

}  // namespace

TestFunction FindTest(std::string_view name) {
  for (const TestEntry& entry : kTests) {
    if (entry.name == name) return entry.test;
  }
  return nullptr;
}

bool IsJinjaTest(std::string_view name) { return FindTest(name) != nullptr; }

}  // namespace tandem::jinja
