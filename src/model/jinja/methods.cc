#include "model/jinja/methods.h"

#include <algorithm>
#include <string>
#include <utility>

#include "common/status_macros.h"
#include "model/jinja/arguments.h"
#include "model/jinja/formatting.h"
#include "model/jinja/operators.h"
#include "model/jinja/utf8.h"

namespace tandem::jinja {
namespace {

using Method = StatusOr<Value> (*)(const Value& self, const CallArgs& args);

Value Str(std::u32string_view text) { return Value::String(EncodeUtf8(text)); }

StatusOr<const std::string*> OptionalChars(const Value& v, std::string_view function) {
  if (!Given(v) || v.is_none()) return static_cast<const std::string*>(nullptr);
  if (!v.is_string()) {
    return TypeError(std::string(function) + " arg must be None or str");
  }
  return &v.str();
}

template <bool kLeft, bool kRight>
StatusOr<Value> StripMethod(const Value& self, const CallArgs& args) {
  const char* name = kLeft && kRight ? "strip" : (kLeft ? "lstrip" : "rstrip");
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments(name, args, {"chars"}));
  TANDEM_ASSIGN_OR_RETURN(const std::string* chars, OptionalChars(a[0], name));
  return Value::String(PythonStrip(self.str(), chars, kLeft, kRight));
}

// str.split / str.rsplit with Python's rules: no separator splits on whitespace runs and drops
// empty pieces; a separator keeps them.
template <bool kFromRight>
StatusOr<Value> SplitMethod(const Value& self, const CallArgs& args) {
  const char* name = kFromRight ? "rsplit" : "split";
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments(name, args, {"sep", "maxsplit"}));
  int64_t maxsplit = -1;
  if (Given(a[1])) {
    TANDEM_ASSIGN_OR_RETURN(maxsplit, IntArgument(a[1], name, "maxsplit"));
  }
  std::u32string text = DecodeUtf8(self.str());
  if (kFromRight) std::reverse(text.begin(), text.end());
  std::vector<std::u32string> parts;
  if (!Given(a[0]) || a[0].is_none()) {
    size_t i = 0;
    while (true) {
      while (i < text.size() && IsPythonSpace(text[i])) ++i;
      if (i >= text.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        parts.push_back(text.substr(i));
        break;
      }
      size_t j = i;
      while (j < text.size() && !IsPythonSpace(text[j])) ++j;
      parts.push_back(text.substr(i, j - i));
      i = j;
    }
  } else {
    TANDEM_ASSIGN_OR_RETURN(const std::string sep_utf8, StringArgument(a[0], name, "sep"));
    std::u32string sep = DecodeUtf8(sep_utf8);
    if (sep.empty()) return InvalidArgumentError("empty separator");
    if (kFromRight) std::reverse(sep.begin(), sep.end());
    size_t i = 0;
    while (true) {
      const size_t j = text.find(sep, i);
      if (j == std::u32string::npos ||
          (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit)) {
        parts.push_back(text.substr(i));
        break;
      }
      parts.push_back(text.substr(i, j - i));
      i = j + sep.size();
    }
  }
  ValueList out;
  for (std::u32string& part : parts) {
    if (kFromRight) std::reverse(part.begin(), part.end());
    out.push_back(Str(part));
  }
  if (kFromRight) std::reverse(out.begin(), out.end());
  return Value::List(std::move(out));
}

bool IsLineBreak(char32_t c) {
  return c == '\n' || c == '\r' || c == '\v' || c == '\f' || (c >= 0x1C && c <= 0x1E) ||
         c == 0x85 || c == 0x2028 || c == 0x2029;
}

StatusOr<Value> SplitLines(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("splitlines", args, {"keepends"}));
  const bool keepends = Truthy(a[0]);
  const std::u32string text = DecodeUtf8(self.str());
  ValueList out;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    while (j < text.size() && !IsLineBreak(text[j])) ++j;
    size_t end = j;
    if (j < text.size()) {
      end = (text[j] == '\r' && j + 1 < text.size() && text[j + 1] == '\n') ? j + 2 : j + 1;
    }
    out.push_back(Str(std::u32string_view(text).substr(i, (keepends ? end : j) - i)));
    i = end;
  }
  return Value::List(std::move(out));
}

// The code points of self[start:end] for find/count/startswith, Python-clamped.
StatusOr<std::u32string> Window(const Value& self, const Value& start, const Value& end) {
  const auto bound = [](const Value& v) { return Given(v) ? v : Value::None(); };
  TANDEM_ASSIGN_OR_RETURN(const Value window, Slice(self, bound(start), bound(end), Value::None()));
  if (!window.is_string()) {
    return TypeError("slice indices must be integers or None or have an __index__ method");
  }
  return DecodeUtf8(window.str());
}

template <bool kEnd>
StatusOr<Value> AffixMethod(const Value& self, const CallArgs& args) {
  const char* name = kEnd ? "endswith" : "startswith";
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments(name, args, {"affix", "start", "end"}));
  TANDEM_ASSIGN_OR_RETURN(const std::u32string text, Window(self, a[1], a[2]));
  ValueList candidates;
  if (a[0].is_string()) {
    candidates.push_back(a[0]);
  } else if (a[0].kind() == Value::Kind::kTuple) {
    candidates = a[0].items();
  } else {
    return TypeError(std::string(name) + " first arg must be str or a tuple of str, not " +
                     TypeName(a[0]));
  }
  for (const Value& candidate : candidates) {
    if (!candidate.is_string()) {
      return TypeError("tuple for " + std::string(name) + " must only contain str, not " +
                       TypeName(candidate));
    }
    const std::u32string affix = DecodeUtf8(candidate.str());
    if (affix.size() > text.size()) continue;
    const size_t at = kEnd ? text.size() - affix.size() : 0;
    if (text.compare(at, affix.size(), affix) == 0) return Value::Bool(true);
  }
  return Value::Bool(false);
}

enum class Case { kUpper, kLower, kSwap, kTitle, kCapitalize };

template <Case kCase>
StatusOr<Value> CaseMethod(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("case", args, {}));
  std::u32string text = DecodeUtf8(self.str());
  bool previous_cased = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    switch (kCase) {
      case Case::kUpper:
        text[i] = ToUpper(c);
        if (c == U'\u00df') text.replace(i++, 1, U"SS");  // Python's full mapping
        break;
      case Case::kLower:
        text[i] = ToLower(c);
        break;
      case Case::kSwap:
        text[i] = ToUpper(c) != c ? ToUpper(c) : ToLower(c);
        break;
      case Case::kTitle:
        text[i] = previous_cased ? ToLower(c) : ToUpper(c);
        previous_cased = IsCased(c);
        break;
      case Case::kCapitalize:
        text[i] = i == 0 ? ToUpper(c) : ToLower(c);
        break;
    }
  }
  return Str(text);
}

StatusOr<Value> ReplaceMethod(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a,
                          BindArguments("replace", args, {"old", "new", "count"}));
  TANDEM_ASSIGN_OR_RETURN(const std::string old_text, StringArgument(a[0], "replace", "old"));
  TANDEM_ASSIGN_OR_RETURN(const std::string new_text, StringArgument(a[1], "replace", "new"));
  int64_t count = -1;
  if (Given(a[2])) {
    TANDEM_ASSIGN_OR_RETURN(count, IntArgument(a[2], "replace", "count"));
  }
  const std::string& s = self.str();
  std::string out;
  if (old_text.empty()) {
    // Python inserts `new` before every code point and at the end.
    const std::u32string cps = DecodeUtf8(s);
    int64_t done = 0;
    for (const char32_t c : cps) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      AppendUtf8(c, &out);
    }
    if (count < 0 || done < count) out += new_text;
    return Value::String(std::move(out));
  }
  size_t i = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t j = s.find(old_text, i);
    if (j == std::string::npos) break;
    out.append(s, i, j - i);
    out += new_text;
    i = j + old_text.size();
    ++done;
  }
  out.append(s, i, std::string::npos);
  return Value::String(std::move(out));
}

StatusOr<Value> JoinMethod(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("join", args, {"iterable"}));
  TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(a[0]));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].is_string()) {
      return TypeError("sequence item " + std::to_string(i) + ": expected str instance, " +
                       TypeName(items[i]) + " found");
    }
    if (i > 0) out += self.str();
    out += self.safe() ? EscapedStr(items[i]) : items[i].str();
  }
  return Value::String(std::move(out));
}

StatusOr<Value> FormatMethod(const Value& self, const CallArgs& args) {
  return StrFormat(self, args);
}

enum class Find { kFind, kRFind, kIndex, kRIndex, kCount };

template <Find kFind>
StatusOr<Value> FindMethod(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("find", args, {"sub", "start", "end"}));
  TANDEM_ASSIGN_OR_RETURN(const std::string sub_utf8, StringArgument(a[0], "find", "sub"));
  const std::u32string sub = DecodeUtf8(sub_utf8);
  TANDEM_ASSIGN_OR_RETURN(const std::u32string text, Window(self, a[1], a[2]));
  int64_t offset = 0;
  if (Given(a[1]) && a[1].is_int()) {
    const auto length = static_cast<int64_t>(CodePointCount(self.str()));
    offset = a[1].int_value() < 0 ? std::max<int64_t>(0, a[1].int_value() + length)
                                  : std::min(a[1].int_value(), length);
  }
  if (kFind == Find::kCount) {
    if (sub.empty()) return Value::Int(static_cast<int64_t>(text.size()) + 1);
    int64_t n = 0;
    for (size_t i = text.find(sub); i != std::u32string::npos; i = text.find(sub, i + sub.size())) {
      ++n;
    }
    return Value::Int(n);
  }
  const bool reverse = kFind == Find::kRFind || kFind == Find::kRIndex;
  const size_t at = reverse ? text.rfind(sub) : text.find(sub);
  if (at == std::u32string::npos) {
    if (kFind == Find::kIndex || kFind == Find::kRIndex) {
      return InvalidArgumentError("substring not found");
    }
    return Value::Int(-1);
  }
  return Value::Int(static_cast<int64_t>(at) + offset);
}

enum class Kind { kDigit, kAlpha, kAlnum, kSpace, kLower, kUpper };

template <Kind kKind>
StatusOr<Value> IsMethod(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("is", args, {}));
  const std::u32string text = DecodeUtf8(self.str());
  if (text.empty()) return Value::Bool(false);
  bool any_cased = false;
  for (const char32_t c : text) {
    const bool digit = c >= '0' && c <= '9';
    const bool alpha = (c < 0x80 && ToUpper(c) != ToLower(c)) || (c >= 0x80 && IsCased(c));
    switch (kKind) {
      case Kind::kDigit:
        if (!digit) return Value::Bool(false);
        break;
      case Kind::kAlpha:
        if (!alpha) return Value::Bool(false);
        break;
      case Kind::kAlnum:
        if (!alpha && !digit) return Value::Bool(false);
        break;
      case Kind::kSpace:
        if (!IsPythonSpace(c)) return Value::Bool(false);
        break;
      case Kind::kLower:
        if (ToLower(c) != c) return Value::Bool(false);
        any_cased = any_cased || IsCased(c);
        break;
      case Kind::kUpper:
        if (ToUpper(c) != c) return Value::Bool(false);
        any_cased = any_cased || IsCased(c);
        break;
    }
  }
  if (kKind == Kind::kLower || kKind == Kind::kUpper) return Value::Bool(any_cased);
  return Value::Bool(true);
}

enum class Justify { kCenter, kLeft, kRight };

template <Justify kJustify>
StatusOr<Value> JustifyMethod(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("center", args, {"width", "fillchar"}));
  TANDEM_ASSIGN_OR_RETURN(const int64_t width, IntArgument(a[0], "center", "width"));
  std::u32string fill = U" ";
  if (Given(a[1])) {
    TANDEM_ASSIGN_OR_RETURN(const std::string f, StringArgument(a[1], "center", "fillchar"));
    fill = DecodeUtf8(f);
    if (fill.size() != 1) {
      return TypeError("The fill character must be exactly one character long");
    }
  }
  const std::u32string text = DecodeUtf8(self.str());
  const auto length = static_cast<int64_t>(text.size());
  if (width <= length) return Value::String(self.str());
  const int64_t margin = width - length;
  int64_t left = 0;
  if (kJustify == Justify::kCenter) left = margin / 2 + (margin & width & 1);
  if (kJustify == Justify::kRight) left = margin;
  const std::u32string out = std::u32string(static_cast<size_t>(left), fill[0]) + text +
                             std::u32string(static_cast<size_t>(margin - left), fill[0]);
  return Str(out);
}

StatusOr<Value> ZFill(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("zfill", args, {"width"}));
  TANDEM_ASSIGN_OR_RETURN(const int64_t width, IntArgument(a[0], "zfill", "width"));
  std::u32string text = DecodeUtf8(self.str());
  const auto length = static_cast<int64_t>(text.size());
  if (width <= length) return Value::String(self.str());
  const size_t at = !text.empty() && (text[0] == '+' || text[0] == '-') ? 1 : 0;
  text.insert(at, static_cast<size_t>(width - length), U'0');
  return Str(text);
}

template <bool kFromRight>
StatusOr<Value> PartitionMethod(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("partition", args, {"sep"}));
  TANDEM_ASSIGN_OR_RETURN(const std::string sep, StringArgument(a[0], "partition", "sep"));
  if (sep.empty()) return InvalidArgumentError("empty separator");
  const std::string& s = self.str();
  const size_t at = kFromRight ? s.rfind(sep) : s.find(sep);
  if (at == std::string::npos) {
    return kFromRight ? Value::Tuple({Value::String(""), Value::String(""), Value::String(s)})
                      : Value::Tuple({Value::String(s), Value::String(""), Value::String("")});
  }
  return Value::Tuple({Value::String(s.substr(0, at)), Value::String(sep),
                       Value::String(s.substr(at + sep.size()))});
}

template <bool kSuffix>
StatusOr<Value> RemoveAffix(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("removeprefix", args, {"affix"}));
  TANDEM_ASSIGN_OR_RETURN(const std::string affix, StringArgument(a[0], "removeprefix", "affix"));
  const std::string& s = self.str();
  if (affix.size() <= s.size()) {
    if (!kSuffix && s.compare(0, affix.size(), affix) == 0) {
      return Value::String(s.substr(affix.size()));
    }
    if (kSuffix && s.compare(s.size() - affix.size(), affix.size(), affix) == 0) {
      return Value::String(s.substr(0, s.size() - affix.size()));
    }
  }
  return Value::String(s);
}

struct MethodEntry {
  std::string_view name;
  Method method;
  // On a safe string: markupsafe escapes string arguments and returns safe strings.
  bool markup = false;
};

constexpr MethodEntry kStringMethods[] = {
    {"strip", StripMethod<true, true>, true},
    {"lstrip", StripMethod<true, false>, true},
    {"rstrip", StripMethod<false, true>, true},
    {"split", SplitMethod<false>, true},
    {"rsplit", SplitMethod<true>, true},
    {"splitlines", SplitLines, true},
    {"startswith", AffixMethod<false>},
    {"endswith", AffixMethod<true>},
    {"upper", CaseMethod<Case::kUpper>, true},
    {"lower", CaseMethod<Case::kLower>, true},
    {"casefold", CaseMethod<Case::kLower>},
    {"swapcase", CaseMethod<Case::kSwap>, true},
    {"title", CaseMethod<Case::kTitle>, true},
    {"capitalize", CaseMethod<Case::kCapitalize>, true},
    {"replace", ReplaceMethod, true},
    {"join", JoinMethod, true},
    {"format", FormatMethod, true},
    {"find", FindMethod<Find::kFind>},
    {"rfind", FindMethod<Find::kRFind>},
    {"index", FindMethod<Find::kIndex>},
    {"rindex", FindMethod<Find::kRIndex>},
    {"count", FindMethod<Find::kCount>},
    {"isdigit", IsMethod<Kind::kDigit>},
    {"isdecimal", IsMethod<Kind::kDigit>},
    {"isnumeric", IsMethod<Kind::kDigit>},
    {"isalpha", IsMethod<Kind::kAlpha>},
    {"isalnum", IsMethod<Kind::kAlnum>},
    {"isspace", IsMethod<Kind::kSpace>},
    {"islower", IsMethod<Kind::kLower>},
    {"isupper", IsMethod<Kind::kUpper>},
    {"center", JustifyMethod<Justify::kCenter>, true},
    {"ljust", JustifyMethod<Justify::kLeft>, true},
    {"rjust", JustifyMethod<Justify::kRight>, true},
    {"zfill", ZFill, true},
    {"partition", PartitionMethod<false>, true},
    {"rpartition", PartitionMethod<true>, true},
    {"removeprefix", RemoveAffix<false>},
    {"removesuffix", RemoveAffix<true>},
};

Value MarkSafe(const Value& v) {
  if (v.is_string()) return Value::String(v.str(), true);
  if (v.is_sequence()) {
    ValueList items;
    for (const Value& item : v.items()) items.push_back(MarkSafe(item));
    return v.kind() == Value::Kind::kList ? Value::List(std::move(items))
                                          : Value::Tuple(std::move(items));
  }
  return v;
}

Value EscapeArgument(const Value& v) {
  return v.is_string() && !v.safe() ? Value::String(EscapeHtml(v.str()), true) : v;
}

StatusOr<Value> ListCount(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("count", args, {"value"}));
  return Value::Int(std::count_if(self.items().begin(), self.items().end(),
                                  [&](const Value& v) { return Equals(v, a[0]); }));
}

StatusOr<Value> ListIndex(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("index", args, {"value"}));
  const ValueList& items = self.items();
  for (size_t i = 0; i < items.size(); ++i) {
    if (Equals(items[i], a[0])) return Value::Int(static_cast<int64_t>(i));
  }
  return InvalidArgumentError(Repr(a[0]) + " is not in " + TypeName(self));
}

StatusOr<Value> Copy(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("copy", args, {}));
  return self;
}

StatusOr<Value> DictItems(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("items", args, {}));
  ValueList out;
  for (const auto& [k, v] : self.dict().items()) out.push_back(Value::Tuple({k, v}));
  return Value::List(std::move(out));
}

StatusOr<Value> DictKeys(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("keys", args, {}));
  ValueList out;
  for (const auto& item : self.dict().items()) out.push_back(item.first);
  return Value::List(std::move(out));
}

StatusOr<Value> DictValues(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("values", args, {}));
  ValueList out;
  for (const auto& item : self.dict().items()) out.push_back(item.second);
  return Value::List(std::move(out));
}

StatusOr<Value> DictGet(const Value& self, const CallArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(const ValueList a, BindArguments("get", args, {"key", "default"}));
  if (const Value* v = self.dict().Find(a[0])) return *v;
  return Given(a[1]) ? a[1] : Value::None();
}

constexpr MethodEntry kListMethods[] = {{"count", ListCount}, {"index", ListIndex}, {"copy", Copy}};
constexpr MethodEntry kDictMethods[] = {{"items", DictItems},
                                        {"keys", DictKeys},
                                        {"values", DictValues},
                                        {"get", DictGet},
                                        {"copy", Copy}};
constexpr std::string_view kUnsafeListMethods[] = {"append", "clear",  "extend",  "insert",
                                                   "pop",    "remove", "reverse", "sort"};
constexpr std::string_view kUnsafeDictMethods[] = {"clear", "pop", "popitem", "setdefault",
                                                   "update"};

template <size_t N>
const MethodEntry* FindEntry(const MethodEntry (&table)[N], std::string_view name) {
  for (const MethodEntry& entry : table) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

template <size_t N>
bool Contains(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

}  // namespace

MethodLookup FindMethod(const Value& object, std::string_view name, Value* method) {
  const MethodEntry* entry = nullptr;
  if (object.is_string()) {
    entry = FindEntry(kStringMethods, name);
  } else if (object.kind() == Value::Kind::kList) {
    if (Contains(kUnsafeListMethods, name)) return MethodLookup::kUnsafe;
    entry = FindEntry(kListMethods, name);
  } else if (object.kind() == Value::Kind::kTuple) {
    entry = FindEntry(kListMethods, name);
    if (entry != nullptr && entry->name == "copy") entry = nullptr;
  } else if (object.is_dict()) {
    if (Contains(kUnsafeDictMethods, name)) return MethodLookup::kUnsafe;
    entry = FindEntry(kDictMethods, name);
  }
  if (entry == nullptr) return MethodLookup::kMissing;
  const Method function = entry->method;
  const bool markup = entry->markup && object.is_string() && object.safe();
  *method = Value::FromCallable(std::string(name), [object, function, markup](CallArgs args) {
    if (!markup) return function(object, args);
    for (Value& arg : args.positional) arg = EscapeArgument(arg);
    for (auto& [key, arg] : args.keyword) arg = EscapeArgument(arg);
    StatusOr<Value> result = function(object, args);
    if (!result.ok()) return result;
    return StatusOr<Value>(MarkSafe(*result));
  });
  return MethodLookup::kFound;
}

}  // namespace tandem::jinja
