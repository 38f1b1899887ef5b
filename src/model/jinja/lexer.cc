#include "model/jinja/lexer.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include "common/status_macros.h"
#include "model/jinja/utf8.h"

namespace tandem::jinja {
namespace {

constexpr size_t kNone = std::string_view::npos;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }
bool IsAsciiSpace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "\r\n" and "\r" become "\n"; one trailing newline is dropped (keep_trailing_newline=False).
std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool AllPythonSpace(std::string_view text) {
  if (text.empty()) return false;
  for (const char32_t c : DecodeUtf8(text)) {
    if (!IsPythonSpace(c)) return false;
  }
  return true;
}

int CountNewlines(std::string_view text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      const size_t tag = FindTagStart(pos_);
      if (tag == kNone) {
        EmitText(src_.substr(pos_), 0);
        pos_ = src_.size();
        break;
      }
      TANDEM_RETURN_IF_ERROR(LexTagStart(tag));
    }
    Token end;
    end.kind = TokenKind::kEnd;
    end.line = line_;
    tokens_.push_back(std::move(end));
    return std::move(tokens_);
  }

 private:
  Status Error(const std::string& message) const {
    return InvalidArgumentError("line " + std::to_string(line_) + ": " + message);
  }

  bool StartsWith(size_t at, std::string_view prefix) const {
    return src_.compare(at, prefix.size(), prefix) == 0;
  }

  size_t SkipSpaces(size_t at) const {
    while (at < src_.size() && IsAsciiSpace(src_[at])) ++at;
    return at;
  }

  size_t FindTagStart(size_t from) const {
    for (size_t i = src_.find('{', from); i != kNone; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return kNone;
  }

  void EmitText(std::string text, int stripped_newlines) {
    const int newlines = CountNewlines(text);
    if (!text.empty()) {
      Token token;
      token.kind = TokenKind::kText;
      token.text = std::move(text);
      token.line = line_;
      tokens_.push_back(std::move(token));
    }
    line_ += newlines + stripped_newlines;
  }

  void Emit(TokenKind kind, std::string text) {
    Token token;
    token.kind = kind;
    token.text = std::move(text);
    token.line = line_;
    tokens_.push_back(std::move(token));
  }

  // Applies the whitespace control of the tag that follows `text`: `-` strips all whitespace
  // before it; otherwise lstrip_blocks strips the indentation of a block or comment tag that
  // starts its line.
  void EmitTextBeforeTag(std::string text, char sign, bool lstrip_applies) {
    int stripped_newlines = 0;
    if (sign == '-') {
      std::string stripped = PythonStrip(text, nullptr, false, true);
      stripped_newlines = CountNewlines(std::string_view(text).substr(stripped.size()));
      text = std::move(stripped);
    } else if (sign != '+' && lstrip_applies) {
      const size_t line_start = text.rfind('\n') == kNone ? 0 : text.rfind('\n') + 1;
      if ((line_start > 0 || line_starting_) &&
          AllPythonSpace(std::string_view(text).substr(line_start))) {
        text.resize(line_start);
      }
    }
    EmitText(std::move(text), stripped_newlines);
  }

  // Matches `{%[-+]? raw [-]?%}` at `at`; returns the end of the match or kNone.
  size_t MatchRawBegin(size_t at) const {
    size_t p = at + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = SkipSpaces(p);
    if (!StartsWith(p, "raw")) return kNone;
    p = SkipSpaces(p + 3);
    if (StartsWith(p, "-%}")) return SkipSpaces(p + 3);
    if (StartsWith(p, "%}")) return p + 2;
    return kNone;
  }

  // Consumes a tag end and what trim_blocks or `-` removes after it, updating the line.
  void ConsumeEnd(size_t end_length, bool strip_after, bool trim_newline) {
    const size_t begin = pos_;
    pos_ += end_length;
    if (strip_after) {
      pos_ = SkipSpaces(pos_);
    } else if (trim_newline && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
    const std::string_view consumed = std::string_view(src_).substr(begin, pos_ - begin);
    line_ += CountNewlines(consumed);
    line_starting_ = !consumed.empty() && consumed.back() == '\n';
  }

  Status LexTagStart(size_t tag) {
    const char type = src_[tag + 1];
    const char next = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
    const char sign = next == '-' || next == '+' ? next : '\0';
    const size_t raw_end = type == '%' ? MatchRawBegin(tag) : kNone;
    EmitTextBeforeTag(src_.substr(pos_, tag - pos_), sign, type != '{');
    line_starting_ = false;
    pos_ = tag + 2 + (sign ? 1 : 0);
    if (raw_end != kNone) return LexRaw(raw_end);
    if (type == '#') return LexComment();
    Emit(type == '{' ? TokenKind::kVariableBegin : TokenKind::kBlockBegin, "");
    return LexTag(type == '%');
  }

  Status LexComment() {
    for (size_t i = pos_; i < src_.size(); ++i) {
      if (StartsWith(i, "+#}") || StartsWith(i, "-#}") || StartsWith(i, "#}")) {
        line_ += CountNewlines(std::string_view(src_).substr(pos_, i - pos_));
        pos_ = i;
        if (src_[i] == '#') {
          ConsumeEnd(2, false, true);
        } else {
          ConsumeEnd(3, src_[i] == '-', false);
        }
        return OkStatus();
      }
    }
    return Error("missing end of comment tag");
  }

  Status LexRaw(size_t body_begin) {
    line_ += CountNewlines(std::string_view(src_).substr(pos_, body_begin - pos_));
    line_starting_ = body_begin > 0 && src_[body_begin - 1] == '\n';
    pos_ = body_begin;
    for (size_t i = src_.find("{%", pos_); i != kNone; i = src_.find("{%", i + 1)) {
      size_t p = i + 2;
      const char sign = p < src_.size() && (src_[p] == '-' || src_[p] == '+') ? src_[p] : '\0';
      if (sign) ++p;
      p = SkipSpaces(p);
      if (!StartsWith(p, "endraw")) continue;
      p = SkipSpaces(p + 6);
      size_t end_length = 0;
      bool strip_after = false;
      bool trim_newline = false;
      if (StartsWith(p, "+%}")) {
        end_length = 3;
      } else if (StartsWith(p, "-%}")) {
        end_length = 3, strip_after = true;
      } else if (StartsWith(p, "%}")) {
        end_length = 2, trim_newline = true;
      } else {
        continue;
      }
      EmitTextBeforeTag(src_.substr(pos_, i - pos_), sign, true);
      line_ += CountNewlines(std::string_view(src_).substr(i, p - i));
      pos_ = p;
      ConsumeEnd(end_length, strip_after, trim_newline);
      return OkStatus();
    }
    return Error("missing end of raw directive");
  }

  // Matches Python's `\d+(_\d+)*` at `at`; returns its end or kNone.
  size_t ScanDigits(size_t at) const {
    if (at >= src_.size() || !IsDigit(src_[at])) return kNone;
    size_t p = at;
    while (true) {
      while (p < src_.size() && IsDigit(src_[p])) ++p;
      if (p + 1 < src_.size() && src_[p] == '_' && IsDigit(src_[p + 1])) {
        ++p;
        continue;
      }
      return p;
    }
  }

  size_t ScanExponent(size_t at) const {
    if (at >= src_.size() || (src_[at] != 'e' && src_[at] != 'E')) return kNone;
    size_t p = at + 1;
    if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
    return ScanDigits(p);
  }

  static std::string WithoutUnderscores(std::string_view text) {
    std::string out;
    for (const char c : text) {
      if (c != '_') out += c;
    }
    return out;
  }

  // A number at pos_ (which holds a digit): float first, as jinja2 tries it first.
  Status LexNumber() {
    const size_t digits_end = ScanDigits(pos_);
    const bool after_dot = pos_ > 0 && src_[pos_ - 1] == '.';
    size_t float_end = kNone;
    if (!after_dot) {
      size_t fraction_end = kNone;
      if (digits_end < src_.size() && src_[digits_end] == '.') {
        fraction_end = ScanDigits(digits_end + 1);
      }
      if (fraction_end != kNone) {
        const size_t exp_end = ScanExponent(fraction_end);
        float_end = exp_end != kNone ? exp_end : fraction_end;
      } else {
        float_end = ScanExponent(digits_end);
      }
    }
    Token token;
    token.line = line_;
    if (float_end != kNone) {
      token.kind = TokenKind::kFloat;
      token.text = src_.substr(pos_, float_end - pos_);
      token.float_value = std::strtod(WithoutUnderscores(token.text).c_str(), nullptr);
      pos_ = float_end;
      tokens_.push_back(std::move(token));
      return OkStatus();
    }
    // Integers: 0b/0o/0x prefixes, a non-zero decimal, or zeros.
    int base = 10;
    size_t p = pos_;
    const char prefix = pos_ + 1 < src_.size() ? static_cast<char>(src_[pos_ + 1] | 0x20) : '\0';
    if (src_[pos_] == '0' && (prefix == 'b' || prefix == 'o' || prefix == 'x')) {
      base = prefix == 'b' ? 2 : (prefix == 'o' ? 8 : 16);
      p = pos_ + 2;
      const size_t digits_begin = p;
      while (p < src_.size()) {
        const size_t q = src_[p] == '_' ? p + 1 : p;
        const int d = q < src_.size() ? HexDigit(src_[q]) : -1;
        if (d < 0 || d >= base) break;
        p = q + 1;
      }
      if (p == digits_begin) {
        base = 10;
        p = pos_ + 1;  // just "0"
      }
    } else if (src_[pos_] == '0') {
      p = pos_ + 1;
      while (p < src_.size()) {
        const size_t q = src_[p] == '_' ? p + 1 : p;
        if (q >= src_.size() || src_[q] != '0') break;
        p = q + 1;
      }
    } else {
      p = digits_end;
    }
    token.kind = TokenKind::kInteger;
    token.text = src_.substr(pos_, p - pos_);
    const std::string digits =
        WithoutUnderscores(std::string_view(token.text).substr(base == 10 ? 0 : 2));
    errno = 0;
    token.int_value = std::strtoll(digits.c_str(), nullptr, base);
    if (errno == ERANGE) return Error("integer literal too large: " + token.text);
    pos_ = p;
    tokens_.push_back(std::move(token));
    return OkStatus();
  }

  Status LexString() {
    const char quote = src_[pos_];
    std::string value;
    size_t p = pos_ + 1;
    const int start_line = line_;
    while (p < src_.size() && src_[p] != quote) {
      if (src_[p] != '\\') {
        value += src_[p++];
        continue;
      }
      if (p + 1 >= src_.size()) break;
      const char e = src_[p + 1];
      p += 2;
      switch (e) {
        case '\n':
          break;
        case '\\':
        case '\'':
        case '"':
          value += e;
          break;
        case 'a':
          value += '\a';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'n':
          value += '\n';
          break;
        case 'r':
          value += '\r';
          break;
        case 't':
          value += '\t';
          break;
        case 'v':
          value += '\v';
          break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t width = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          char32_t c = 0;
          for (size_t k = 0; k < width; ++k) {
            const int d = p + k < src_.size() ? HexDigit(src_[p + k]) : -1;
            if (d < 0) return Error("truncated \\" + std::string(1, e) + " escape in string");
            c = c * 16 + static_cast<char32_t>(d);
          }
          if (c > 0x10FFFF) return Error("illegal Unicode character in string");
          p += width;
          AppendUtf8(c, &value);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t c = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++k) {
              c = c * 8 + static_cast<char32_t>(src_[p++] - '0');
            }
            AppendUtf8(c, &value);
          } else if (e == 'N') {
            return Error("unsupported \\N{...} escape in string");
          } else {
            value += '\\';
            value += e;
          }
      }
    }
    if (p >= src_.size()) return Error("unterminated string");
    line_ += CountNewlines(std::string_view(src_).substr(pos_, p - pos_));
    Token token;
    token.kind = TokenKind::kString;
    token.text = std::move(value);
    token.line = start_line;
    tokens_.push_back(std::move(token));
    pos_ = p + 1;
    return OkStatus();
  }

  Status LexOperator(std::vector<char>* balance) {
    static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const std::string_view op : kTwoChar) {
      if (StartsWith(pos_, op)) {
        Emit(TokenKind::kOperator, std::string(op));
        pos_ += 2;
        return OkStatus();
      }
    }
    const char c = src_[pos_];
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == kNone) {
      return Error(std::string("unexpected char '") + c + "'");
    }
    if (c == '(' || c == '[' || c == '{') {
      balance->push_back(c == '(' ? ')' : (c == '[' ? ']' : '}'));
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance->empty()) return Error(std::string("unexpected '") + c + "'");
      const char expected = balance->back();
      balance->pop_back();
      if (expected != c) {
        return Error(std::string("unexpected '") + c + "', expected '" + expected + "'");
      }
    }
    Emit(TokenKind::kOperator, std::string(1, c));
    ++pos_;
    return OkStatus();
  }

  // Tokens of an expression or statement, up to its closing tag.
  Status LexTag(bool is_block) {
    std::vector<char> balance;
    const TokenKind end_kind = is_block ? TokenKind::kBlockEnd : TokenKind::kVariableEnd;
    while (true) {
      if (pos_ >= src_.size()) {
        return Error(std::string("unexpected end of template, unclosed '") +
                     (is_block ? "{%" : "{{") + "'");
      }
      if (balance.empty()) {
        bool matched = true;
        if (is_block && StartsWith(pos_, "+%}")) {
          Emit(end_kind, "");
          ConsumeEnd(3, false, false);
        } else if (StartsWith(pos_, is_block ? "-%}" : "-}}")) {
          Emit(end_kind, "");
          ConsumeEnd(3, true, false);
        } else if (StartsWith(pos_, is_block ? "%}" : "}}")) {
          Emit(end_kind, "");
          ConsumeEnd(2, false, is_block);
        } else {
          matched = false;
        }
        if (matched) return OkStatus();
      }
      const char c = src_[pos_];
      line_starting_ = false;
      if (IsAsciiSpace(c)) {
        const size_t end = SkipSpaces(pos_);
        line_ += CountNewlines(std::string_view(src_).substr(pos_, end - pos_));
        line_starting_ = src_[end - 1] == '\n';
        pos_ = end;
      } else if (IsDigit(c)) {
        TANDEM_RETURN_IF_ERROR(LexNumber());
      } else if (IsNameStart(c)) {
        size_t end = pos_;
        while (end < src_.size() && IsNameChar(src_[end])) ++end;
        Emit(TokenKind::kName, src_.substr(pos_, end - pos_));
        pos_ = end;
      } else if (c == '\'' || c == '"') {
        TANDEM_RETURN_IF_ERROR(LexString());
      } else {
        TANDEM_RETURN_IF_ERROR(LexOperator(&balance));
      }
    }
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  // Whether the last consumed piece ended a line (lstrip_blocks applies at a template start).
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
  return Lexer(NormalizeNewlines(source)).Run();
}

}  // namespace tandem::jinja
