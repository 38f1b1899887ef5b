#include "model/jinja/formatting.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <string>

#include "common/status_macros.h"
#include "model/jinja/operators.h"
#include "model/jinja/utf8.h"

namespace tandem::jinja {
namespace {

// A conversion's flags, width and precision.
struct Spec {
  char fill = ' ';
  char align = '\0';  // '<', '>', '^', '=' or none
  char sign = '-';
  bool alternate = false;
  bool zero = false;
  int width = -1;
  int precision = -1;
  char grouping = '\0';  // ',' or '_' between thousands (str.format only)
  char type = '\0';
};

// Inserts `separator` between groups of three digits of the first digit run.
std::string GroupThousands(const std::string& text, char separator) {
  const size_t begin = text.find_first_of("0123456789");
  if (begin == std::string::npos) return text;
  size_t end = begin;
  while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
  std::string digits = text.substr(begin, end - begin);
  for (size_t i = digits.size(); i > 3; i -= 3) digits.insert(i - 3, 1, separator);
  return text.substr(0, begin) + digits + text.substr(end);
}

std::string Pad(const std::string& text, const Spec& spec, char default_align) {
  const auto length = static_cast<int>(CodePointCount(text));
  if (spec.width <= length) return text;
  const int margin = spec.width - length;
  const char align = spec.align ? spec.align : default_align;
  std::string fill_left;
  std::string fill_right;
  if (align == '<') {
    fill_right.assign(static_cast<size_t>(margin), spec.fill);
  } else if (align == '^') {
    fill_left.assign(static_cast<size_t>(margin / 2), spec.fill);
    fill_right.assign(static_cast<size_t>(margin - margin / 2), spec.fill);
  } else if (align == '=' && !text.empty() &&
             (text[0] == '-' || text[0] == '+' || text[0] == ' ')) {
    return text.substr(0, 1) + std::string(static_cast<size_t>(margin), spec.fill) + text.substr(1);
  } else {
    fill_left.assign(static_cast<size_t>(margin), spec.fill);
  }
  return fill_left + text + fill_right;
}

std::string Truncate(const std::string& text, int precision) {
  if (precision < 0) return text;
  const std::u32string cps = DecodeUtf8(text);
  if (cps.size() <= static_cast<size_t>(precision)) return text;
  return EncodeUtf8(std::u32string_view(cps).substr(0, static_cast<size_t>(precision)));
}

// A number formatted with C's printf, which Python's formatting matches for these types.
StatusOr<std::string> FormatNumber(const Value& v, const Spec& spec, char type) {
  if (!v.is_number()) {
    return TypeError(std::string("%") + type + " format: a real number is required, not " +
                     TypeName(v));
  }
  std::string flags;
  if (spec.alternate) flags += '#';
  if (spec.sign == '+' || spec.sign == ' ') flags += spec.sign;
  char buf[512];
  if (type == 'd' || type == 'i' || type == 'u' || type == 'x' || type == 'X' || type == 'o' ||
      type == 'b') {
    const double d = v.number();
    if (v.kind() == Value::Kind::kFloat && !std::isfinite(d)) {
      return InvalidArgumentError("cannot convert float infinity or NaN to integer");
    }
    if (v.kind() == Value::Kind::kFloat && std::fabs(d) >= 9.2e18) {
      return InvalidArgumentError("integer overflow");
    }
    const int64_t i = v.is_int() ? v.int_value() : static_cast<int64_t>(std::trunc(d));
    // Python prints negative binary, octal and hex with a sign, not in two's complement.
    uint64_t magnitude = i < 0 ? uint64_t{0} - static_cast<uint64_t>(i) : static_cast<uint64_t>(i);
    if (type == 'b') {
      std::string bits;
      do {
        bits.insert(bits.begin(), static_cast<char>('0' + (magnitude & 1)));
        magnitude >>= 1;
      } while (magnitude != 0);
      return (i < 0 ? "-" : (spec.sign == '+' ? "+" : "")) +
             std::string(spec.alternate ? "0b" : "") + bits;
    }
    if (type == 'd' || type == 'i' || type == 'u') {
      const std::string format = "%" + flags + PRId64;
      std::snprintf(buf, sizeof(buf), format.c_str(), i);
    } else {
      const std::string format =
          "%" + flags + (type == 'x' ? PRIx64 : (type == 'X' ? PRIX64 : PRIo64));
      std::snprintf(buf, sizeof(buf), format.c_str(), magnitude);
      std::string text = buf;
      if (type == 'o' && spec.alternate) text = "0o" + text.substr(text[0] == '0' ? 1 : 0);
      return (i < 0 ? "-" : "") + text;
    }
    return std::string(buf);
  }
  const int precision = spec.precision < 0 ? 6 : std::min(spec.precision, 300);
  const std::string format = "%" + flags + "." + std::to_string(precision) + type;
  std::snprintf(buf, sizeof(buf), format.c_str(), v.number());
  return std::string(buf);
}

}  // namespace

StatusOr<Value> PercentFormat(const Value& format, const Value& args) {
  const bool safe = format.safe();
  ValueList positional;
  const Dict* mapping = nullptr;
  if (args.kind() == Value::Kind::kTuple) {
    positional = args.items();
  } else {
    positional.push_back(args);
    if (args.is_dict()) mapping = &args.dict();
  }
  const std::string& f = format.str();
  std::string out;
  size_t next = 0;
  bool used_mapping = false;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] != '%') {
      out += f[i];
      continue;
    }
    if (++i >= f.size()) return InvalidArgumentError("incomplete format");
    Value arg;
    bool have_arg = false;
    if (f[i] == '(') {
      const size_t close = f.find(')', i);
      if (close == std::string::npos) return InvalidArgumentError("incomplete format key");
      if (mapping == nullptr) return TypeError("format requires a mapping");
      const Value* v = mapping->Find(std::string_view(f).substr(i + 1, close - i - 1));
      if (v == nullptr) return InvalidArgumentError("KeyError: " + f.substr(i + 1, close - i - 1));
      arg = *v;
      have_arg = true;
      used_mapping = true;
      i = close + 1;
    }
    Spec spec;
    for (; i < f.size() && std::string_view("-+ #0").find(f[i]) != std::string_view::npos; ++i) {
      if (f[i] == '-') spec.align = '<';
      if (f[i] == '+' || (f[i] == ' ' && spec.sign != '+')) spec.sign = f[i];
      if (f[i] == '#') spec.alternate = true;
      if (f[i] == '0') spec.zero = true;
    }
    for (; i < f.size() && f[i] >= '0' && f[i] <= '9'; ++i) {
      spec.width = (spec.width < 0 ? 0 : spec.width * 10) + (f[i] - '0');
    }
    if (i < f.size() && f[i] == '.') {
      spec.precision = 0;
      for (++i; i < f.size() && f[i] >= '0' && f[i] <= '9'; ++i) {
        spec.precision = spec.precision * 10 + (f[i] - '0');
      }
    }
    if (i >= f.size()) return InvalidArgumentError("incomplete format");
    const char type = f[i];
    if (type == '%') {
      out += '%';
      continue;
    }
    if (!have_arg) {
      if (next >= positional.size()) {
        return TypeError("not enough arguments for format string");
      }
      arg = positional[next++];
    }
    std::string text;
    bool numeric = false;
    switch (type) {
      case 's':
        text = Truncate(safe ? EscapedStr(arg) : ToStr(arg), spec.precision);
        break;
      case 'r':
      case 'a':
        text = Truncate(safe ? EscapeHtml(Repr(arg)) : Repr(arg), spec.precision);
        break;
      case 'c':
        if (arg.is_int()) {
          AppendUtf8(static_cast<char32_t>(arg.int_value()), &text);
        } else if (arg.is_string() && CodePointCount(arg.str()) == 1) {
          text = arg.str();
        } else {
          return TypeError("%c requires int or char");
        }
        break;
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o':
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        TANDEM_ASSIGN_OR_RETURN(text, FormatNumber(arg, spec, type));
        numeric = true;
        break;
      }
      default:
        return InvalidArgumentError(std::string("unsupported format character '") + type + "'");
    }
    if (numeric && spec.zero && spec.align != '<') {
      spec.fill = '0';
      spec.align = '=';
    }
    out += Pad(text, spec, '>');
  }
  // Python skips this check when the argument has __getitem__ (a list or dict).
  const bool subscriptable = args.is_dict() || args.kind() == Value::Kind::kList;
  if (!used_mapping && !subscriptable && next < positional.size()) {
    return TypeError("not all arguments converted during string formatting");
  }
  return Value::String(std::move(out), safe);
}

namespace {

// Parses a str.format spec: [[fill]align][sign][#][0][width][,][.precision][type].
StatusOr<Spec> ParseFormatSpec(const std::string& s) {
  Spec spec;
  size_t i = 0;
  auto is_align = [](char c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (s.size() >= 2 && is_align(s[1])) {
    spec.fill = s[0];
    spec.align = s[1];
    i = 2;
  } else if (!s.empty() && is_align(s[0])) {
    spec.align = s[0];
    i = 1;
  }
  if (i < s.size() && (s[i] == '+' || s[i] == '-' || s[i] == ' ')) spec.sign = s[i++];
  if (i < s.size() && s[i] == '#') spec.alternate = true, ++i;
  if (i < s.size() && s[i] == '0') spec.zero = true, ++i;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    spec.width = (spec.width < 0 ? 0 : spec.width * 10) + (s[i] - '0');
  }
  if (i < s.size() && (s[i] == ',' || s[i] == '_')) spec.grouping = s[i++];
  if (i < s.size() && s[i] == '.') {
    spec.precision = 0;
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
      spec.precision = spec.precision * 10 + (s[i] - '0');
    }
  }
  if (i < s.size()) spec.type = s[i++];
  if (i != s.size()) return InvalidArgumentError("Invalid format specifier '" + s + "'");
  return spec;
}

StatusOr<std::string> FormatField(const Value& v, const std::string& spec_text) {
  TANDEM_ASSIGN_OR_RETURN(Spec spec, ParseFormatSpec(spec_text));
  if (spec.type == '\0' && !v.is_number()) spec.type = 's';
  if (spec.type == 's') {
    if (v.is_number()) return InvalidArgumentError("Unknown format code 's' for numeric value");
    return Pad(Truncate(ToStr(v), spec.precision), spec, '<');
  }
  std::string text;
  if (spec.type == '\0') {
    text = ToStr(v);
    if (spec.sign == '+' && v.number() >= 0) text = "+" + text;
  } else if (spec.type == '%') {
    if (!v.is_number()) return InvalidArgumentError("Unknown format code '%'");
    TANDEM_ASSIGN_OR_RETURN(text, FormatNumber(Value::Float(v.number() * 100), spec, 'f'));
    text += '%';
  } else if (spec.type == 'n') {
    TANDEM_ASSIGN_OR_RETURN(text, FormatNumber(v, spec, v.is_int() ? 'd' : 'g'));
  } else {
    if ((spec.type == 'd' || spec.type == 'x' || spec.type == 'X' || spec.type == 'o' ||
         spec.type == 'b') &&
        !v.is_int()) {
      return InvalidArgumentError(std::string("Unknown format code '") + spec.type +
                                  "' for object of type '" + TypeName(v) + "'");
    }
    TANDEM_ASSIGN_OR_RETURN(text, FormatNumber(v, spec, spec.type));
  }
  if (spec.grouping != '\0') {
    if (spec.type != '\0' && spec.type != 'd' && spec.type != 'f' && spec.type != 'F') {
      return InvalidArgumentError(std::string("Cannot specify '") + spec.grouping + "' with '" +
                                  spec.type + "'.");
    }
    text = GroupThousands(text, spec.grouping);
  }
  if (spec.zero && spec.align == '\0') {
    spec.fill = '0';
    spec.align = '=';
  }
  return Pad(text, spec, '>');
}

}  // namespace

StatusOr<Value> StrFormat(const Value& format, const CallArgs& args) {
  const std::string& f = format.str();
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    const char c = f[i];
    if (c == '}') {
      if (i + 1 < f.size() && f[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      return InvalidArgumentError("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < f.size() && f[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = f.find('}', i);
    if (close == std::string::npos) {
      return InvalidArgumentError("Single '{' encountered in format string");
    }
    std::string field = f.substr(i + 1, close - i - 1);
    i = close;
    std::string spec;
    if (const size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    char conversion = '\0';
    if (const size_t bang = field.find('!'); bang != std::string::npos) {
      conversion = bang + 1 < field.size() ? field[bang + 1] : '\0';
      field.resize(bang);
    }
    Value arg;
    if (field.empty() || (field[0] >= '0' && field[0] <= '9')) {
      size_t index = auto_index;
      if (field.empty()) {
        ++auto_index;
      } else {
        index = 0;
        for (const char d : field) {
          if (d < '0' || d > '9' || index > 1000000) {
            return InvalidArgumentError("unsupported format field '" + field + "'");
          }
          index = index * 10 + static_cast<size_t>(d - '0');
        }
      }
      if (index >= args.positional.size()) {
        return InvalidArgumentError("Replacement index " + std::to_string(index) +
                                    " out of range for positional args tuple");
      }
      arg = args.positional[index];
    } else {
      bool found = false;
      for (const auto& [key, value] : args.keyword) {
        if (key == field) arg = value, found = true;
      }
      if (!found) return InvalidArgumentError("KeyError: '" + field + "'");
    }
    if (conversion == 'r' || conversion == 'a') arg = Value::String(Repr(arg));
    if (conversion == 's') arg = Value::String(ToStr(arg));
    TANDEM_ASSIGN_OR_RETURN(std::string text, FormatField(arg, spec));
    out += format.safe() ? EscapedStr(Value::String(text, arg.is_string() && arg.safe())) : text;
  }
  return Value::String(std::move(out), format.safe());
}

}  // namespace tandem::jinja
