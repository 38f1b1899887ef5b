// The parsed form of a template: expressions (Expr) and statements (Node). Built once by the
// parser, then only read.
//
// Thread safety: immutable after parsing; may be shared by concurrent renders.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "model/jinja/builtins.h"
#include "model/jinja/operators.h"
#include "model/jinja/value.h"

namespace tandem::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
};

enum class ExprKind {
  kLiteral,    // literal
  kName,       // name
  kList,       // children
  kTuple,      // children
  kDict,       // children: key, value, key, value, ...
  kGetAttr,    // children[0].name
  kGetItem,    // children[0][children[1]]
  kSlice,      // children[0][children[1]:children[2]:children[3]], absent bounds are null
  kCall,       // children[0](arguments)
  kFilter,     // children[0] | filter(arguments); children[0] is null in a filter block
  kTest,       // children[0] is test(arguments), negated when `negate`
  kNeg,        // -children[0]
  kPos,        // +children[0]
  kNot,        // not children[0]
  kAnd,        // children[0] and children[1]
  kOr,         // children[0] or children[1]
  kBinary,     // children[0] binary_op children[1]
  kConcat,     // children[0] ~ children[1] ~ ...
  kCompare,    // children[0] compare_ops[0] children[1] compare_ops[1] children[2] ...
  kCondition,  // children[0] if children[1] else children[2] (null: undefined)
};

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  int line = 0;
  Value literal;
  // kName: the variable; kGetAttr: the attribute; kFilter/kTest: the filter or test name.
  std::string name;
  BinaryOp binary_op = BinaryOp::kAdd;
  std::vector<CompareOp> compare_ops;
  bool negate = false;
  std::vector<ExprPtr> children;
  Arguments arguments;
  FilterFunction filter = nullptr;
  TestFunction test = nullptr;
  // Height of the tree below (1 for a leaf); the parser bounds it, so that evaluating and
  // destroying an expression cannot exhaust the stack.
  int depth = 1;
};

// Sets `expr->depth` from its operands' (already set) depths.
inline void UpdateDepth(Expr* expr) {
  int deepest = 0;
  for (const ExprPtr& child : expr->children) {
    if (child != nullptr) deepest = std::max(deepest, child->depth);
  }
  for (const ExprPtr& arg : expr->arguments.positional) deepest = std::max(deepest, arg->depth);
  for (const auto& [key, arg] : expr->arguments.keyword) deepest = std::max(deepest, arg->depth);
  expr->depth = deepest + 1;
}

inline ExprPtr MakeExpr(ExprKind kind, int line) {
  auto expr = std::make_unique<Expr>();
  expr->kind = kind;
  expr->line = line;
  return expr;
}

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

// Literal template data.
struct TextNode {
  std::string text;
};

// {{ expr }}
struct OutputNode {
  ExprPtr expr;
};

// {% if %} {% elif %}... {% else %} {% endif %}
struct IfNode {
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body else_body;
};

// {% for targets in iterable if filter %} body {% else %} else_body {% endfor %}
struct ForNode {
  std::vector<std::string> targets;
  bool unpack = false;  // `for a, b in ...` (also `for (a,) in ...`)
  ExprPtr iterable;
  ExprPtr filter;  // may be null
  Body body;
  Body else_body;
};

// {% set targets = value %} or {% set target.attribute = value %}
struct SetNode {
  std::vector<std::string> targets;
  bool unpack = false;
  std::string attribute;  // non-empty: assigns a namespace attribute of targets[0]
  ExprPtr value;
};

// {% set target | filters %} body {% endset %}
struct SetBlockNode {
  std::string target;
  ExprPtr filter;  // kFilter chain whose innermost input is null, or null
  Body body;
};

// A macro's or a call block's parameters.
struct Parameters {
  std::vector<std::string> names;
  std::vector<ExprPtr> defaults;  // aligned with names; null when required
  bool uses_varargs = false;      // the body reads `varargs`
  bool uses_kwargs = false;       // the body reads `kwargs`
  bool uses_caller = false;       // the body reads `caller`
};

// {% macro name(parameters) %} body {% endmacro %}
struct MacroNode {
  std::string name;
  Parameters parameters;
  Body body;
};

// {% call(parameters) expr %} body {% endcall %}
struct CallBlockNode {
  ExprPtr call;
  Parameters parameters;
  Body body;
};

// {% with a = 1, b = 2 %} body {% endwith %}
struct WithNode {
  std::vector<std::pair<std::string, ExprPtr>> assignments;
  Body body;
};

// {% filter name(args) | ... %} body {% endfilter %}
struct FilterBlockNode {
  ExprPtr filter;  // kFilter chain whose innermost input is null
  Body body;
};

// {% break %} / {% continue %}
struct LoopControlNode {
  bool is_break = false;
};

// transformers' {% generation %} body {% endgeneration %}: renders its body.
struct GenerationNode {
  Body body;
};

struct Node {
  int line = 0;
  std::variant<TextNode, OutputNode, IfNode, ForNode, SetNode, SetBlockNode, MacroNode,
               CallBlockNode, WithNode, FilterBlockNode, LoopControlNode, GenerationNode>
      data;
};

}  // namespace tandem::jinja
