// A cursor over the tokens of one template, with the expectations both parsers share.
//
// Thread safety: none; one parse owns it.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/jinja/lexer.h"
#include "tandem/status.h"

namespace tandem::jinja {

class TokenStream {
 public:
  explicit TokenStream(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  const Token& Current() const { return tokens_[pos_]; }
  const Token& Look() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  void Advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  int Line() const { return Current().line; }

  static bool IsName(const Token& t, std::string_view value) {
    return t.kind == TokenKind::kName && t.text == value;
  }
  static bool IsOp(const Token& t, std::string_view value) {
    return t.kind == TokenKind::kOperator && t.text == value;
  }
  bool SkipName(std::string_view value) {
    if (!IsName(Current(), value)) return false;
    Advance();
    return true;
  }
  bool SkipOp(std::string_view value) {
    if (!IsOp(Current(), value)) return false;
    Advance();
    return true;
  }

  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kEnd:
        return "end of template";
      case TokenKind::kBlockEnd:
        return "end of statement block";
      case TokenKind::kVariableEnd:
        return "end of print statement";
      case TokenKind::kBlockBegin:
        return "begin of statement block";
      case TokenKind::kVariableBegin:
        return "begin of print statement";
      case TokenKind::kText:
        return "template data";
      case TokenKind::kString:
        return "string";
      case TokenKind::kInteger:
        return "integer";
      case TokenKind::kFloat:
        return "float";
      default:
        return "'" + t.text + "'";
    }
  }

  Status ErrorAt(int line, const std::string& message) const {
    return InvalidArgumentError("line " + std::to_string(line) + ": " + message);
  }
  Status Unexpected(const std::string& expected) const {
    return ErrorAt(Line(), "unexpected " + Describe(Current()) + ", expected " + expected);
  }

  Status ExpectOp(std::string_view op) {
    if (!SkipOp(op)) return Unexpected("'" + std::string(op) + "'");
    return OkStatus();
  }
  StatusOr<std::string> ExpectName() {
    if (Current().kind != TokenKind::kName) return Unexpected("a name");
    std::string name = Current().text;
    Advance();
    return name;
  }
  Status ExpectBlockEnd() {
    if (Current().kind != TokenKind::kBlockEnd) return Unexpected("end of statement block");
    Advance();
    return OkStatus();
  }

 private:
  std::vector<Token> tokens_;  // ends with kEnd
  size_t pos_ = 0;
};

}  // namespace tandem::jinja
