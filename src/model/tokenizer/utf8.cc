#include "model/tokenizer/utf8.h"

namespace tandem::tokenizer {
namespace {

// Length of the valid sequence at text[pos], or 0 with `bad` set to the length of the maximal
// invalid subpart (Unicode "substitution of maximal subparts", what Python does).
size_t SequenceLength(std::string_view text, size_t pos, size_t* bad) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  *bad = 1;
  if (b0 < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t i = 1; i <= need; ++i) {
    if (pos + i >= text.size()) return 0;
    const auto b = static_cast<unsigned char>(text[pos + i]);
    if (b < lo || b > hi) return 0;
    *bad = i + 1;
    lo = 0x80;
    hi = 0xBF;
  }
  return need + 1;
}

}  // namespace

std::optional<size_t> FindInvalidUtf8(std::string_view text) {
  size_t pos = 0, bad = 0;
  while (pos < text.size()) {
    const size_t n = SequenceLength(text, pos, &bad);
    if (n == 0) return pos;
    pos += n;
  }
  return std::nullopt;
}

char32_t NextCodePoint(std::string_view text, size_t& pos) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  int extra = b0 >= 0xF0 ? 3 : b0 >= 0xE0 ? 2 : 1;
  char32_t cp = b0 & (0x3F >> extra);
  ++pos;
  for (int i = 0; i < extra && pos < text.size(); ++i, ++pos) {
    cp = (cp << 6) | (static_cast<unsigned char>(text[pos]) & 0x3F);
  }
  return cp;
}

void AppendUtf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string SanitizeUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0, bad = 0;
  while (pos < bytes.size()) {
    const size_t n = SequenceLength(bytes, pos, &bad);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      pos += bad;
    } else {
      out.append(bytes.substr(pos, n));
      pos += n;
    }
  }
  return out;
}

}  // namespace tandem::tokenizer
