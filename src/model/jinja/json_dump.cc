#include "model/jinja/json_dump.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/status_macros.h"
#include "model/jinja/utf8.h"

namespace tandem::jinja {
namespace {

void AppendEscape(char32_t c, std::string* out) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
  *out += buf;
}

void AppendJsonString(const std::string& s, bool ensure_ascii, std::string* out) {
  *out += '"';
  for (const char32_t c : DecodeUtf8(s)) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (c < 0x20) {
          AppendEscape(c, out);
        } else if (ensure_ascii && c > 0x7E) {
          if (c >= 0x10000) {
            const char32_t v = c - 0x10000;
            AppendEscape(0xD800 + (v >> 10), out);
            AppendEscape(0xDC00 + (v & 0x3FF), out);
          } else {
            AppendEscape(c, out);
          }
        } else {
          AppendUtf8(c, out);
        }
    }
  }
  *out += '"';
}

std::string JsonFloat(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f < 0 ? "-Infinity" : "Infinity";
  return FormatFloat(f);
}

class Dumper {
 public:
  explicit Dumper(const JsonDumpOptions& options) : options_(options) {}

  Status Dump(const Value& v, int level, std::string* out) {
    switch (v.kind()) {
      case Value::Kind::kNone:
        *out += "null";
        return OkStatus();
      case Value::Kind::kBool:
        *out += v.bool_value() ? "true" : "false";
        return OkStatus();
      case Value::Kind::kInt:
        *out += std::to_string(v.int_value());
        return OkStatus();
      case Value::Kind::kFloat:
        *out += JsonFloat(v.number());
        return OkStatus();
      case Value::Kind::kString:
        AppendJsonString(v.str(), options_.ensure_ascii, out);
        return OkStatus();
      case Value::Kind::kList:
      case Value::Kind::kTuple:
        return DumpList(v.items(), level, out);
      case Value::Kind::kDict:
        return DumpDict(v.dict(), level, out);
      default:
        return TypeError("Object of type " + TypeName(v) + " is not JSON serializable");
    }
  }

 private:
  // Opens a nested level; returns the separator between items.
  std::string Open(int level, std::string* out) {
    if (!options_.indent) return options_.item_separator;
    std::string newline_indent = "\n";
    for (int i = 0; i <= level; ++i) newline_indent += *options_.indent;
    *out += newline_indent;
    return options_.item_separator + newline_indent;
  }

  void Close(int level, std::string* out) {
    if (!options_.indent) return;
    *out += '\n';
    for (int i = 0; i < level; ++i) *out += *options_.indent;
  }

  Status DumpList(const ValueList& items, int level, std::string* out) {
    if (items.empty()) {
      *out += "[]";
      return OkStatus();
    }
    *out += '[';
    const std::string separator = Open(level, out);
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) *out += separator;
      TANDEM_RETURN_IF_ERROR(Dump(items[i], level + 1, out));
    }
    Close(level, out);
    *out += ']';
    return OkStatus();
  }

  static StatusOr<std::string> KeyString(const Value& key) {
    switch (key.kind()) {
      case Value::Kind::kString:
        return key.str();
      case Value::Kind::kFloat:
        return JsonFloat(key.number());
      case Value::Kind::kBool:
        return std::string(key.bool_value() ? "true" : "false");
      case Value::Kind::kNone:
        return std::string("null");
      case Value::Kind::kInt:
        return std::to_string(key.int_value());
      default:
        return TypeError("keys must be str, int, float, bool or None, not " + TypeName(key));
    }
  }

  Status DumpDict(const Dict& dict, int level, std::string* out) {
    if (dict.size() == 0) {
      *out += "{}";
      return OkStatus();
    }
    std::vector<const std::pair<Value, Value>*> items;
    for (const auto& item : dict.items()) items.push_back(&item);
    if (options_.sort_keys) {
      Status error;
      std::stable_sort(items.begin(), items.end(), [&error](const auto* a, const auto* b) {
        StatusOr<int> c = Compare(a->first, b->first, "<");
        if (!c.ok()) {
          error = c.status();
          return false;
        }
        return *c < 0;
      });
      TANDEM_RETURN_IF_ERROR(error);
    }
    *out += '{';
    const std::string separator = Open(level, out);
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) *out += separator;
      TANDEM_ASSIGN_OR_RETURN(const std::string key, KeyString(items[i]->first));
      AppendJsonString(key, options_.ensure_ascii, out);
      *out += options_.key_separator;
      TANDEM_RETURN_IF_ERROR(Dump(items[i]->second, level + 1, out));
    }
    Close(level, out);
    *out += '}';
    return OkStatus();
  }

  const JsonDumpOptions& options_;
};

}  // namespace

StatusOr<std::string> DumpJson(const Value& value, const JsonDumpOptions& options) {
  std::string out;
  TANDEM_RETURN_IF_ERROR(Dumper(options).Dump(value, 0, &out));
  return out;
}

}  // namespace tandem::jinja
