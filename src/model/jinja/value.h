// The values a template computes with, modelled on the Python objects jinja2 handles: Undefined,
// None, bool, int, float, str (with markupsafe's "safe" mark), list, tuple, the generators some
// filters return, dict (insertion ordered), objects with attributes (namespace(), the loop
// variable) and callables (macros, globals, bound methods). Lists, tuples and dicts are immutable
// once built, as in jinja2's immutable sandbox, so values share them; only a namespace's attributes
// change.
//
// Thread safety: a Value may be read from several threads unless it holds an Object (a namespace
// or loop), which belongs to one render.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "tandem/status.h"

namespace tandem::jinja {

class Value;
class Dict;
struct CallArgs;
struct Callable;
struct Object;
using ValueList = std::vector<Value>;

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kTuple,
    kIterator,  // a generator of jinja2's filters (select, map, ...): truthy, without a length
    kDict,
    kObject,
    kCallable,
  };

  // Undefined, with the message an operation on it fails with ("'foo' is undefined").
  Value() : Value(Kind::kUndefined) {}
  static Value Undefined(std::string hint);
  static Value None() { return Value(Kind::kNone); }
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  // `safe` marks markupsafe's Markup: concatenating it with a plain string escapes the latter.
  static Value String(std::string s, bool safe = false);
  static Value List(ValueList items);
  static Value Tuple(ValueList items);
  static Value Iterator(ValueList items);
  static Value FromDict(Dict dict);
  static Value FromObject(std::shared_ptr<Object> object);
  static Value FromCallable(std::string name,
                            std::function<StatusOr<Value>(CallArgs args)> function,
                            bool is_macro = false);

  // From JSON (objects keep the json type's key order). Nesting deeper than 512 levels is
  // InvalidArgument.
  static StatusOr<Value> FromJson(const nlohmann::json& json);
  static StatusOr<Value> FromJson(const nlohmann::ordered_json& json);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_int() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }  // bool is an int
  bool is_number() const { return is_int() || kind_ == Kind::kFloat; }
  bool is_sequence() const { return kind_ == Kind::kList || kind_ == Kind::kTuple; }
  bool is_dict() const { return kind_ == Kind::kDict; }

  bool bool_value() const { return std::get<bool>(data_); }
  // Int or bool as an integer.
  int64_t int_value() const;
  // Any number as a double.
  double number() const;
  const std::string& str() const { return *std::get<StringPtr>(data_); }
  bool safe() const { return safe_; }
  // A list's, tuple's or iterator's items.
  const ValueList& items() const { return *std::get<ListPtr>(data_); }
  const Dict& dict() const { return *std::get<DictPtr>(data_); }
  Object& object() const { return *std::get<ObjectPtr>(data_); }
  const Callable& callable() const { return *std::get<CallablePtr>(data_); }
  // The failure message of an undefined value.
  const std::string& undefined_hint() const;

 private:
  using StringPtr = std::shared_ptr<const std::string>;
  using ListPtr = std::shared_ptr<const ValueList>;
  using DictPtr = std::shared_ptr<const Dict>;
  using ObjectPtr = std::shared_ptr<Object>;
  using CallablePtr = std::shared_ptr<const Callable>;

  explicit Value(Kind kind) : kind_(kind) {}

  Kind kind_;
  bool safe_ = false;
  std::variant<std::monostate, bool, int64_t, double, StringPtr, ListPtr, DictPtr, ObjectPtr,
               CallablePtr>
      data_;
};

// A Python dict: insertion ordered, keys compared with Python equality (1 == 1.0 == True).
class Dict {
 public:
  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  // Replaces the value of an existing key, else appends.
  void Set(Value key, Value value);
  const std::vector<std::pair<Value, Value>>& items() const { return items_; }
  size_t size() const { return items_.size(); }

 private:
  std::vector<std::pair<Value, Value>> items_;
};

// Positional and keyword arguments of a call.
struct CallArgs {
  ValueList positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// A callable: a global function, a bound method or a macro.
struct Callable {
  using Function = std::function<StatusOr<Value>(CallArgs args)>;
  std::string name;
  Function function;
  // Macros run template code: their errors already name a line.
  bool is_macro = false;
};

// An object with attributes: a namespace() (attributes assignable with `set ns.x = ...`) or a
// loop variable (attributes computed on access from the iteration's position).
struct Object {
  enum class Type { kNamespace, kLoop };
  Type type = Type::kNamespace;
  Dict attributes;  // a namespace's

  // A loop's: the items iterated, this iteration's index, and the state of loop.changed().
  std::shared_ptr<const ValueList> loop_items;
  size_t loop_index = 0;
  std::shared_ptr<Value> loop_changed;
};

// loop.index, loop.first, loop.cycle, ... of a loop object; Undefined for unknown names.
Value LoopAttribute(const Object& loop, std::string_view name);

// Python's truth value (Undefined is false).
bool Truthy(const Value& v);

// Python's type name, as error messages print it ("str", "NoneType", "dict").
std::string TypeName(const Value& v);

// Python's str() and repr(); floats print as Python does ("1.0", "1e+16", "0.1").
std::string ToStr(const Value& v);
std::string Repr(const Value& v);
std::string FormatFloat(double f);

// Python's == (Undefined equals only Undefined).
bool Equals(const Value& a, const Value& b);

// Python's ordering of numbers, strings, lists and tuples: -1, 0 or 1; other pairs are a
// TypeError naming `op` ("'<' not supported between instances of 'str' and 'int'").
StatusOr<int> Compare(const Value& a, const Value& b, std::string_view op);

// The jinja2 description of a value's type in "has no attribute" messages ("dict object").
std::string ObjectTypeDescription(const Value& v);

// Errors of the interpreter's value model: a message as Python would word it.
inline Status TypeError(std::string message) { return InvalidArgumentError(std::move(message)); }

}  // namespace tandem::jinja
