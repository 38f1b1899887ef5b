// Parses jinja2 expressions with jinja2's precedence, from lowest: `x if c else y`, or, and, not,
// comparisons (==, !=, <, <=, >, >=, in, not in), + and -, ~, *, /, // and %, **, unary - and +,
// then postfix access (.name, [key], [a:b:c], calls), filters (|f) and tests (is t).
//
// Filters and tests are resolved while parsing: an unknown one is an error naming its line.
//
// Thread safety: none; one parse owns it.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "model/jinja/ast.h"
#include "model/jinja/token_stream.h"
#include "tandem/status.h"

namespace tandem::jinja {

class ExpressionParser : public TokenStream {
 public:
  explicit ExpressionParser(std::vector<Token> tokens) : TokenStream(std::move(tokens)) {}

  // Comma-separated expressions: one alone is itself, several (or a trailing comma) a tuple.
  // `simplified` parses primaries only (assignment targets); `with_condexpr` allows
  // `a if b else c`; the tuple also ends before a name in `extra_end_names`.
  StatusOr<ExprPtr> ParseTuple(bool simplified, bool with_condexpr,
                               std::initializer_list<std::string_view> extra_end_names,
                               bool explicit_parentheses);
  StatusOr<ExprPtr> ParseExpression(bool with_condexpr);
  // `| name(args) | ...` applied to `node`; with start_inline the first `|` is absent (filter
  // blocks), and a null node stands for the block's body.
  StatusOr<ExprPtr> ParseFilter(ExprPtr node, bool start_inline);

  // While a macro or call block body is parsed, uses of `varargs`, `kwargs` and `caller` are
  // recorded in the innermost one's parameters.
  void PushCallable(Parameters* parameters) { callables_.push_back(parameters); }
  void PopCallable() { callables_.pop_back(); }

 private:
  bool IsTupleEnd(std::initializer_list<std::string_view> extra_end_names) const;
  StatusOr<ExprPtr> ParseCondition();
  StatusOr<ExprPtr> ParseOr();
  StatusOr<ExprPtr> ParseAnd();
  StatusOr<ExprPtr> ParseNot();
  StatusOr<ExprPtr> ParseCompare();
  StatusOr<ExprPtr> ParseBinaryLevel(
      std::initializer_list<std::pair<std::string_view, BinaryOp>> ops,
      StatusOr<ExprPtr> (ExpressionParser::*next)());
  StatusOr<ExprPtr> ParseMath1();
  StatusOr<ExprPtr> ParseConcat();
  StatusOr<ExprPtr> ParseMath2();
  StatusOr<ExprPtr> ParsePow();
  StatusOr<ExprPtr> ParseUnaryWithFilter();
  StatusOr<ExprPtr> ParseUnary(bool with_filter);
  StatusOr<ExprPtr> ParsePrimary();
  void NoteNameUse(const std::string& name);
  StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  StatusOr<ExprPtr> ParseSubscript(ExprPtr object, int line);
  Status ParseArguments(Arguments* arguments);
  StatusOr<ExprPtr> ParseCall(ExprPtr callee);
  StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  StatusOr<std::string> ParseDottedName();
  StatusOr<ExprPtr> ParseTest(ExprPtr node);

  // Counts nesting so that a deeply nested expression is an error, not a stack overflow.
  Status Enter();
  Status CheckDepth(const Expr& expr) const;
  void Leave() { --depth_; }

  std::vector<Parameters*> callables_;  // macros and call blocks being parsed, innermost last
  int depth_ = 0;
};

}  // namespace tandem::jinja
