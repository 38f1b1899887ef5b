#include "model/jinja/expression_parser.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "common/status_macros.h"

namespace tandem::jinja {
namespace {

ExprPtr MakeUnary(ExprKind kind, int line, ExprPtr operand) {
  ExprPtr expr = MakeExpr(kind, line);
  expr->children.push_back(std::move(operand));
  UpdateDepth(expr.get());
  return expr;
}

ExprPtr MakeBinary(ExprKind kind, int line, ExprPtr left, ExprPtr right) {
  ExprPtr expr = MakeExpr(kind, line);
  expr->children.push_back(std::move(left));
  expr->children.push_back(std::move(right));
  UpdateDepth(expr.get());
  return expr;
}

// Deeper nesting is refused: each level of parentheses costs a few kilobytes of stack while
// parsing, each level of the tree some hundred bytes while evaluating.
constexpr int kMaxNesting = 100;
constexpr int kMaxDepth = 1000;

}  // namespace

Status ExpressionParser::Enter() {
  if (++depth_ > kMaxNesting) {
    --depth_;
    return InvalidArgumentError("line " + std::to_string(Line()) +
                                ": expression nested too deeply");
  }
  return OkStatus();
}

bool ExpressionParser::IsTupleEnd(std::initializer_list<std::string_view> extra_end_names) const {
  const Token& t = Current();
  if (t.kind == TokenKind::kVariableEnd || t.kind == TokenKind::kBlockEnd ||
      t.kind == TokenKind::kEnd || IsOp(t, ")")) {
    return true;
  }
  for (const std::string_view name : extra_end_names) {
    if (IsName(t, name)) return true;
  }
  return false;
}

// Comma-separated expressions: one alone is itself, several (or a trailing comma) a tuple.
StatusOr<ExprPtr> ExpressionParser::ParseTuple(
    bool simplified, bool with_condexpr, std::initializer_list<std::string_view> extra_end_names,
    bool explicit_parentheses) {
  const int line = Line();
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) TANDEM_RETURN_IF_ERROR(ExpectOp(","));
    if (IsTupleEnd(extra_end_names)) break;
    StatusOr<ExprPtr> item = simplified ? ParsePrimary() : ParseExpression(with_condexpr);
    if (!item.ok()) return item.status();
    items.push_back(std::move(item).value());
    if (!IsOp(Current(), ",")) break;
    is_tuple = true;
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parentheses) return Unexpected("an expression");
  }
  ExprPtr tuple = MakeExpr(ExprKind::kTuple, line);
  tuple->children = std::move(items);
  UpdateDepth(tuple.get());
  return tuple;
}

StatusOr<ExprPtr> ExpressionParser::ParseExpression(bool with_condexpr) {
  TANDEM_RETURN_IF_ERROR(Enter());
  StatusOr<ExprPtr> expr = with_condexpr ? ParseCondition() : ParseOr();
  Leave();
  if (expr.ok()) TANDEM_RETURN_IF_ERROR(CheckDepth(**expr));
  return expr;
}

Status ExpressionParser::CheckDepth(const Expr& expr) const {
  if (expr.depth > kMaxDepth) {
    return InvalidArgumentError("line " + std::to_string(expr.line) +
                                ": expression nested too deeply");
  }
  return OkStatus();
}

StatusOr<ExprPtr> ExpressionParser::ParseCondition() {
  TANDEM_ASSIGN_OR_RETURN(ExprPtr value, ParseOr());
  while (IsName(Current(), "if")) {
    const int line = Line();
    Advance();
    TANDEM_ASSIGN_OR_RETURN(ExprPtr condition, ParseOr());
    ExprPtr otherwise;
    if (SkipName("else")) {
      TANDEM_RETURN_IF_ERROR(Enter());
      StatusOr<ExprPtr> parsed = ParseCondition();
      Leave();
      if (!parsed.ok()) return parsed.status();
      otherwise = std::move(parsed).value();
    }
    ExprPtr expr = MakeBinary(ExprKind::kCondition, line, std::move(value), std::move(condition));
    expr->children.push_back(std::move(otherwise));
    UpdateDepth(expr.get());
    value = std::move(expr);
  }
  return value;
}

StatusOr<ExprPtr> ExpressionParser::ParseOr() {
  TANDEM_ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
  while (IsName(Current(), "or")) {
    const int line = Line();
    Advance();
    TANDEM_ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
    left = MakeBinary(ExprKind::kOr, line, std::move(left), std::move(right));
    TANDEM_RETURN_IF_ERROR(CheckDepth(*left));
  }
  return left;
}

StatusOr<ExprPtr> ExpressionParser::ParseAnd() {
  TANDEM_ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
  while (IsName(Current(), "and")) {
    const int line = Line();
    Advance();
    TANDEM_ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
    left = MakeBinary(ExprKind::kAnd, line, std::move(left), std::move(right));
    TANDEM_RETURN_IF_ERROR(CheckDepth(*left));
  }
  return left;
}

StatusOr<ExprPtr> ExpressionParser::ParseNot() {
  if (IsName(Current(), "not")) {
    const int line = Line();
    Advance();
    TANDEM_RETURN_IF_ERROR(Enter());
    StatusOr<ExprPtr> operand = ParseNot();
    Leave();
    if (!operand.ok()) return operand.status();
    return MakeUnary(ExprKind::kNot, line, std::move(operand).value());
  }
  return ParseCompare();
}

StatusOr<ExprPtr> ExpressionParser::ParseCompare() {
  const int line = Line();
  TANDEM_ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
  ExprPtr compare = MakeExpr(ExprKind::kCompare, line);
  compare->children.push_back(std::move(first));
  static constexpr std::pair<std::string_view, CompareOp> kOps[] = {
      {"==", CompareOp::kEq}, {"!=", CompareOp::kNe}, {"<", CompareOp::kLt},
      {"<=", CompareOp::kLe}, {">", CompareOp::kGt},  {">=", CompareOp::kGe}};
  while (true) {
    std::optional<CompareOp> op;
    for (const auto& [spelling, value] : kOps) {
      if (IsOp(Current(), spelling)) op = value;
    }
    if (op) {
      Advance();
    } else if (IsName(Current(), "in")) {
      Advance();
      op = CompareOp::kIn;
    } else if (IsName(Current(), "not") && IsName(Look(), "in")) {
      Advance();
      Advance();
      op = CompareOp::kNotIn;
    } else {
      break;
    }
    TANDEM_ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
    compare->compare_ops.push_back(*op);
    compare->children.push_back(std::move(operand));
  }
  if (compare->compare_ops.empty()) return std::move(compare->children[0]);
  UpdateDepth(compare.get());
  return compare;
}

StatusOr<ExprPtr> ExpressionParser::ParseBinaryLevel(
    std::initializer_list<std::pair<std::string_view, BinaryOp>> ops,
    StatusOr<ExprPtr> (ExpressionParser::*next)()) {
  TANDEM_ASSIGN_OR_RETURN(ExprPtr left, (this->*next)());
  while (true) {
    const auto it = std::find_if(ops.begin(), ops.end(),
                                 [&](const auto& op) { return IsOp(Current(), op.first); });
    if (it == ops.end()) return left;
    const int line = Line();
    Advance();
    TANDEM_ASSIGN_OR_RETURN(ExprPtr right, (this->*next)());
    left = MakeBinary(ExprKind::kBinary, line, std::move(left), std::move(right));
    TANDEM_RETURN_IF_ERROR(CheckDepth(*left));
    left->binary_op = it->second;
  }
}

StatusOr<ExprPtr> ExpressionParser::ParseMath1() {
  return ParseBinaryLevel({{"+", BinaryOp::kAdd}, {"-", BinaryOp::kSub}},
                          &ExpressionParser::ParseConcat);
}

StatusOr<ExprPtr> ExpressionParser::ParseConcat() {
  const int line = Line();
  TANDEM_ASSIGN_OR_RETURN(ExprPtr first, ParseMath2());
  if (!IsOp(Current(), "~")) return first;
  ExprPtr concat = MakeExpr(ExprKind::kConcat, line);
  concat->children.push_back(std::move(first));
  while (SkipOp("~")) {
    TANDEM_ASSIGN_OR_RETURN(ExprPtr next, ParseMath2());
    concat->children.push_back(std::move(next));
  }
  UpdateDepth(concat.get());
  return concat;
}

StatusOr<ExprPtr> ExpressionParser::ParseMath2() {
  return ParseBinaryLevel({{"*", BinaryOp::kMul},
                           {"/", BinaryOp::kDiv},
                           {"//", BinaryOp::kFloorDiv},
                           {"%", BinaryOp::kMod}},
                          &ExpressionParser::ParsePow);
}

StatusOr<ExprPtr> ExpressionParser::ParsePow() {
  return ParseBinaryLevel({{"**", BinaryOp::kPow}}, &ExpressionParser::ParseUnaryWithFilter);
}

StatusOr<ExprPtr> ExpressionParser::ParseUnaryWithFilter() { return ParseUnary(true); }

StatusOr<ExprPtr> ExpressionParser::ParseUnary(bool with_filter) {
  const int line = Line();
  ExprPtr node;
  if (IsOp(Current(), "-") || IsOp(Current(), "+")) {
    const ExprKind kind = IsOp(Current(), "-") ? ExprKind::kNeg : ExprKind::kPos;
    Advance();
    TANDEM_RETURN_IF_ERROR(Enter());
    StatusOr<ExprPtr> operand = ParseUnary(false);
    Leave();
    if (!operand.ok()) return operand.status();
    node = MakeUnary(kind, line, std::move(operand).value());
  } else {
    TANDEM_ASSIGN_OR_RETURN(node, ParsePrimary());
  }
  TANDEM_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  if (with_filter) {
    TANDEM_ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
  }
  return node;
}

StatusOr<ExprPtr> ExpressionParser::ParsePrimary() {
  const Token& t = Current();
  const int line = t.line;
  ExprPtr node;
  if (t.kind == TokenKind::kName) {
    node = MakeExpr(ExprKind::kLiteral, line);
    if (t.text == "true" || t.text == "True") {
      node->literal = Value::Bool(true);
    } else if (t.text == "false" || t.text == "False") {
      node->literal = Value::Bool(false);
    } else if (t.text == "none" || t.text == "None") {
      node->literal = Value::None();
    } else {
      node->kind = ExprKind::kName;
      node->name = t.text;
      NoteNameUse(t.text);
    }
    Advance();
  } else if (t.kind == TokenKind::kString) {
    std::string value;
    while (Current().kind == TokenKind::kString) {
      value += Current().text;
      Advance();
    }
    node = MakeExpr(ExprKind::kLiteral, line);
    node->literal = Value::String(std::move(value));
  } else if (t.kind == TokenKind::kInteger || t.kind == TokenKind::kFloat) {
    node = MakeExpr(ExprKind::kLiteral, line);
    node->literal =
        t.kind == TokenKind::kInteger ? Value::Int(t.int_value) : Value::Float(t.float_value);
    Advance();
  } else if (IsOp(t, "(")) {
    Advance();
    TANDEM_ASSIGN_OR_RETURN(node, ParseTuple(false, true, {}, true));
    TANDEM_RETURN_IF_ERROR(ExpectOp(")"));
  } else if (IsOp(t, "[")) {
    Advance();
    node = MakeExpr(ExprKind::kList, line);
    while (!IsOp(Current(), "]")) {
      if (!node->children.empty()) TANDEM_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(Current(), "]")) break;
      TANDEM_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(true));
      node->children.push_back(std::move(item));
    }
    Advance();
  } else if (IsOp(t, "{")) {
    Advance();
    node = MakeExpr(ExprKind::kDict, line);
    while (!IsOp(Current(), "}")) {
      if (!node->children.empty()) TANDEM_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(Current(), "}")) break;
      TANDEM_ASSIGN_OR_RETURN(ExprPtr key, ParseExpression(true));
      TANDEM_RETURN_IF_ERROR(ExpectOp(":"));
      TANDEM_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      node->children.push_back(std::move(key));
      node->children.push_back(std::move(value));
    }
    Advance();
  } else {
    return ErrorAt(line, "unexpected " + Describe(t));
  }
  UpdateDepth(node.get());
  return node;
}

void ExpressionParser::NoteNameUse(const std::string& name) {
  if (callables_.empty()) return;
  Parameters* parameters = callables_.back();
  if (name == "varargs") parameters->uses_varargs = true;
  if (name == "kwargs") parameters->uses_kwargs = true;
  if (name == "caller") parameters->uses_caller = true;
}

StatusOr<ExprPtr> ExpressionParser::ParsePostfix(ExprPtr node) {
  while (true) {
    TANDEM_RETURN_IF_ERROR(CheckDepth(*node));
    const int line = Line();
    if (SkipOp(".")) {
      if (Current().kind == TokenKind::kName) {
        ExprPtr attr = MakeUnary(ExprKind::kGetAttr, line, std::move(node));
        attr->name = Current().text;
        node = std::move(attr);
      } else if (Current().kind == TokenKind::kInteger) {
        ExprPtr index = MakeExpr(ExprKind::kLiteral, line);
        index->literal = Value::Int(Current().int_value);
        node = MakeBinary(ExprKind::kGetItem, line, std::move(node), std::move(index));
      } else {
        return Unexpected("a name or number");
      }
      Advance();
    } else if (SkipOp("[")) {
      TANDEM_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node), line));
    } else if (IsOp(Current(), "(")) {
      TANDEM_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
    } else {
      return node;
    }
  }
}

// After `[`: an index, a slice, or several indexes (a tuple key).
StatusOr<ExprPtr> ExpressionParser::ParseSubscript(ExprPtr object, int line) {
  std::vector<ExprPtr> keys;
  ExprPtr slice;
  while (!IsOp(Current(), "]")) {
    if (!keys.empty() || slice) TANDEM_RETURN_IF_ERROR(ExpectOp(","));
    ExprPtr start;
    if (!IsOp(Current(), ":")) {
      TANDEM_ASSIGN_OR_RETURN(start, ParseExpression(true));
      if (!IsOp(Current(), ":")) {
        keys.push_back(std::move(start));
        continue;
      }
    }
    Advance();  // ':'
    slice = MakeUnary(ExprKind::kSlice, line, nullptr);
    slice->children.push_back(std::move(start));
    ExprPtr stop;
    ExprPtr step;
    if (!IsOp(Current(), "]") && !IsOp(Current(), ",") && !IsOp(Current(), ":")) {
      TANDEM_ASSIGN_OR_RETURN(stop, ParseExpression(true));
    }
    if (SkipOp(":") && !IsOp(Current(), "]") && !IsOp(Current(), ",")) {
      TANDEM_ASSIGN_OR_RETURN(step, ParseExpression(true));
    }
    slice->children.push_back(std::move(stop));
    slice->children.push_back(std::move(step));
  }
  Advance();  // ']'
  if (slice) {
    if (!keys.empty()) return ErrorAt(line, "unsupported subscript mixing slices and indexes");
    slice->children[0] = std::move(object);
    UpdateDepth(slice.get());
    return slice;
  }
  if (keys.empty()) return ErrorAt(line, "expected subscript expression");
  ExprPtr key;
  if (keys.size() == 1) {
    key = std::move(keys[0]);
  } else {
    key = MakeExpr(ExprKind::kTuple, line);
    key->children = std::move(keys);
    UpdateDepth(key.get());
  }
  return MakeBinary(ExprKind::kGetItem, line, std::move(object), std::move(key));
}

Status ExpressionParser::ParseArguments(Arguments* arguments) {
  TANDEM_RETURN_IF_ERROR(ExpectOp("("));
  bool first = true;
  while (!IsOp(Current(), ")")) {
    if (!first) TANDEM_RETURN_IF_ERROR(ExpectOp(","));
    first = false;
    if (IsOp(Current(), ")")) break;
    if (IsOp(Current(), "*") || IsOp(Current(), "**")) {
      return ErrorAt(Line(), "unsupported argument unpacking");
    }
    if (Current().kind == TokenKind::kName && IsOp(Look(), "=")) {
      std::string key = Current().text;
      Advance();
      Advance();
      TANDEM_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      arguments->keyword.emplace_back(std::move(key), std::move(value));
    } else {
      if (!arguments->keyword.empty()) {
        return ErrorAt(Line(), "positional argument follows keyword argument");
      }
      TANDEM_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      arguments->positional.push_back(std::move(value));
    }
  }
  Advance();
  return OkStatus();
}

StatusOr<ExprPtr> ExpressionParser::ParseCall(ExprPtr callee) {
  ExprPtr call = MakeUnary(ExprKind::kCall, Line(), std::move(callee));
  TANDEM_RETURN_IF_ERROR(ParseArguments(&call->arguments));
  UpdateDepth(call.get());
  return call;
}

StatusOr<ExprPtr> ExpressionParser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    TANDEM_RETURN_IF_ERROR(CheckDepth(*node));
    if (IsOp(Current(), "|")) {
      TANDEM_ASSIGN_OR_RETURN(node, ParseFilter(std::move(node), false));
    } else if (IsName(Current(), "is")) {
      TANDEM_ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
    } else if (IsOp(Current(), "(")) {
      TANDEM_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
    } else {
      return node;
    }
  }
}

StatusOr<std::string> ExpressionParser::ParseDottedName() {
  TANDEM_ASSIGN_OR_RETURN(std::string name, ExpectName());
  while (SkipOp(".")) {
    TANDEM_ASSIGN_OR_RETURN(std::string part, ExpectName());
    name += "." + part;
  }
  return name;
}

// `| name(args) | ...`; with start_inline the first `|` is absent (filter blocks).
StatusOr<ExprPtr> ExpressionParser::ParseFilter(ExprPtr node, bool start_inline) {
  while (IsOp(Current(), "|") || start_inline) {
    if (!start_inline) Advance();
    start_inline = false;
    const int line = Line();
    TANDEM_ASSIGN_OR_RETURN(std::string name, ParseDottedName());
    ExprPtr filter = MakeUnary(ExprKind::kFilter, line, std::move(node));
    filter->filter = FindFilter(name);
    if (filter->filter == nullptr) {
      return ErrorAt(line, std::string(IsJinjaFilter(name) ? "unsupported" : "unknown") +
                               " filter '" + name + "'");
    }
    filter->name = std::move(name);
    if (IsOp(Current(), "(")) TANDEM_RETURN_IF_ERROR(ParseArguments(&filter->arguments));
    UpdateDepth(filter.get());
    TANDEM_RETURN_IF_ERROR(CheckDepth(*filter));
    node = std::move(filter);
  }
  return node;
}

StatusOr<ExprPtr> ExpressionParser::ParseTest(ExprPtr node) {
  const int line = Line();
  Advance();  // "is"
  const bool negate = SkipName("not");
  TANDEM_ASSIGN_OR_RETURN(std::string name, ParseDottedName());
  ExprPtr test = MakeUnary(ExprKind::kTest, line, std::move(node));
  test->negate = negate;
  test->test = FindTest(name);
  if (test->test == nullptr) {
    return ErrorAt(
        line, std::string(IsJinjaTest(name) ? "unsupported" : "unknown") + " test '" + name + "'");
  }
  test->name = std::move(name);
  const Token& t = Current();
  const bool starts_argument = t.kind == TokenKind::kName || t.kind == TokenKind::kString ||
                               t.kind == TokenKind::kInteger || t.kind == TokenKind::kFloat ||
                               IsOp(t, "(") || IsOp(t, "[") || IsOp(t, "{");
  if (IsOp(t, "(")) {
    TANDEM_RETURN_IF_ERROR(ParseArguments(&test->arguments));
  } else if (starts_argument && !IsName(t, "else") && !IsName(t, "or") && !IsName(t, "and")) {
    if (IsName(t, "is")) return ErrorAt(t.line, "cannot chain multiple tests with is");
    TANDEM_ASSIGN_OR_RETURN(ExprPtr argument, ParsePrimary());
    TANDEM_ASSIGN_OR_RETURN(argument, ParsePostfix(std::move(argument)));
    test->arguments.positional.push_back(std::move(argument));
  }
  UpdateDepth(test.get());
  return test;
}

}  // namespace tandem::jinja
