// Python's operators on template values, with jinja2's sandboxed attribute and item access.
//
// Errors are InvalidArgument worded as Python words them ("unsupported operand type(s) for -:
// 'str' and 'int'"), without a line: the interpreter adds it.
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "model/jinja/value.h"
#include "tandem/status.h"

namespace tandem::jinja {

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow };
enum class CompareOp { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

StatusOr<Value> BinaryOperation(BinaryOp op, const Value& a, const Value& b);
StatusOr<Value> Negate(const Value& v);
StatusOr<Value> UnaryPlus(const Value& v);
StatusOr<bool> CompareValues(CompareOp op, const Value& a, const Value& b);

// Python's `item in container`.
StatusOr<bool> Contains(const Value& container, const Value& item);

// jinja2's `obj.name`: a dict's methods before its keys, a str's or list's methods, a namespace's
// or loop's attributes. Missing attributes are Undefined; an unsafe one (a mutating method, a
// name starting with "_") is an Undefined that fails when called. Undefined `obj` is an error.
StatusOr<Value> GetAttr(const Value& obj, std::string_view name);

// jinja2's `obj[key]`: a key or index first, then (for string keys) an attribute.
StatusOr<Value> GetItem(const Value& obj, const Value& key);

// Python's obj[start:stop:step] on a str, list or tuple (None bounds are absent). Unlike `obj[key]`
// jinja2 does not turn its errors into Undefined.
StatusOr<Value> Slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

// The items a for loop visits: a list's or tuple's items, a dict's keys, a string's characters,
// nothing for Undefined. Other values are a TypeError.
StatusOr<ValueList> Iterate(const Value& v);

// Number of items (code points for a string); a TypeError for values without a length.
StatusOr<int64_t> Length(const Value& v);

// markupsafe's escape of &, <, >, ' and ".
std::string EscapeHtml(std::string_view text);

// str() of a value for concatenation with a safe string: escaped unless it is safe already.
std::string EscapedStr(const Value& v);

}  // namespace tandem::jinja
