// Splits a template into tokens the way jinja2's lexer does with transformers' settings:
// trim_blocks (a newline right after a block or comment tag is dropped), lstrip_blocks (spaces and
// tabs before a block or comment tag at the start of a line are dropped), `-` and `+` whitespace
// control on tags, raw blocks, newlines normalised to "\n" and one trailing newline removed.
//
// Thread safety: pure function.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem::jinja {

enum class TokenKind {
  kText,           // template data outside tags
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,
  kString,  // text holds the unescaped value
  kInteger,
  kFloat,
  kOperator,  // text holds the spelling: "+", "//", "==", "(", ...
  kEnd,
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
};

// The last token is kEnd. A malformed template is InvalidArgument naming the line.
StatusOr<std::vector<Token>> Tokenize(std::string_view source);

}  // namespace tandem::jinja
