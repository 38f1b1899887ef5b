#include "model/jinja/parser.h"

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <utility>

#include "common/status_macros.h"
#include "model/jinja/expression_parser.h"
#include "model/jinja/lexer.h"

namespace tandem::jinja {
namespace {

// Tags of jinja2 outside the subset chat templates use.
constexpr std::string_view kUnsupportedTags[] = {"extends", "block",      "include", "import",
                                                 "from",    "autoescape", "do",      "trans"};

// The statement grammar; expressions come from ExpressionParser.
class Parser : public ExpressionParser {
 public:
  explicit Parser(std::vector<Token> tokens) : ExpressionParser(std::move(tokens)) {}

  StatusOr<Body> ParseAll() {
    std::string end;
    return ParseBody({}, &end);
  }

 private:
  // ---- statements ----------------------------------------------------------------------------

  // Parses until a `{% tag %}` whose name is in `end_tags`; consumes `{%` and the tag name and
  // stores it in `found`. Without end tags, parses to the end of the template.
  StatusOr<Body> ParseBody(std::initializer_list<std::string_view> end_tags, std::string* found) {
    Body body;
    while (true) {
      const Token& t = Current();
      if (t.kind == TokenKind::kEnd) {
        if (end_tags.size() == 0) return body;
        std::string expected;
        for (const std::string_view tag : end_tags) {
          expected += (expected.empty() ? "'" : " or '") + std::string(tag) + "'";
        }
        return ErrorAt(t.line, "unexpected end of template, expected " + expected);
      }
      if (t.kind == TokenKind::kText) {
        auto node = std::make_unique<Node>();
        node->line = t.line;
        node->data = TextNode{t.text};
        body.push_back(std::move(node));
        Advance();
      } else if (t.kind == TokenKind::kVariableBegin) {
        const int line = t.line;
        Advance();
        TANDEM_ASSIGN_OR_RETURN(ExprPtr expr, ParseTuple(/*simplified=*/false, true, {}, false));
        if (Current().kind != TokenKind::kVariableEnd) return Unexpected("end of print statement");
        Advance();
        auto node = std::make_unique<Node>();
        node->line = line;
        node->data = OutputNode{std::move(expr)};
        body.push_back(std::move(node));
      } else if (t.kind == TokenKind::kBlockBegin) {
        const Token& name = Look();
        if (name.kind == TokenKind::kName &&
            std::find(end_tags.begin(), end_tags.end(), name.text) != end_tags.end()) {
          *found = name.text;
          Advance();
          Advance();
          return body;
        }
        Advance();
        TANDEM_ASSIGN_OR_RETURN(NodePtr node, ParseStatement());
        if (node != nullptr) body.push_back(std::move(node));
      } else {
        return ErrorAt(t.line, "unexpected " + Describe(t));
      }
    }
  }

  // Nested blocks deeper than this are refused rather than risking the stack.
  static constexpr int kMaxBlockNesting = 100;

  StatusOr<NodePtr> ParseStatement() {
    if (block_depth_ >= kMaxBlockNesting) {
      return ErrorAt(Line(), "blocks nested too deeply");
    }
    ++block_depth_;
    StatusOr<NodePtr> node = ParseStatementAtDepth();
    --block_depth_;
    return node;
  }

  StatusOr<NodePtr> ParseStatementAtDepth() {
    if (Current().kind != TokenKind::kName) {
      return ErrorAt(Line(), "tag name expected, got " + Describe(Current()));
    }
    const std::string tag = Current().text;
    const int line = Line();
    auto node = std::make_unique<Node>();
    node->line = line;
    if (tag == "print") {
      // Comma-separated expressions, each printed (not a tuple, unlike {{ a, b }}).
      Advance();
      ExprPtr concat = MakeExpr(ExprKind::kConcat, line);
      while (Current().kind != TokenKind::kBlockEnd) {
        if (!concat->children.empty()) TANDEM_RETURN_IF_ERROR(ExpectOp(","));
        TANDEM_ASSIGN_OR_RETURN(ExprPtr expr, ParseExpression(true));
        concat->children.push_back(std::move(expr));
      }
      if (concat->children.empty()) return Unexpected("an expression");
      node->data = OutputNode{std::move(concat)};
      TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (tag == "if") {
      TANDEM_RETURN_IF_ERROR(ParseIf(node.get()));
    } else if (tag == "for") {
      TANDEM_RETURN_IF_ERROR(ParseFor(node.get()));
    } else if (tag == "set") {
      TANDEM_RETURN_IF_ERROR(ParseSet(node.get()));
    } else if (tag == "macro") {
      TANDEM_RETURN_IF_ERROR(ParseMacro(node.get()));
    } else if (tag == "call") {
      TANDEM_RETURN_IF_ERROR(ParseCallBlock(node.get()));
    } else if (tag == "with") {
      TANDEM_RETURN_IF_ERROR(ParseWith(node.get()));
    } else if (tag == "filter") {
      Advance();
      FilterBlockNode block;
      TANDEM_ASSIGN_OR_RETURN(block.filter, ParseFilter(nullptr, /*start_inline=*/true));
      TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
      TANDEM_ASSIGN_OR_RETURN(block.body, ParseBodyUntil("endfilter"));
      node->data = std::move(block);
    } else if (tag == "generation") {
      Advance();
      TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
      GenerationNode block;
      TANDEM_ASSIGN_OR_RETURN(block.body, ParseBodyUntil("endgeneration"));
      node->data = std::move(block);
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) return ErrorAt(line, "'" + tag + "' outside loop");
      Advance();
      node->data = LoopControlNode{tag == "break"};
      TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (std::find(std::begin(kUnsupportedTags), std::end(kUnsupportedTags), tag) !=
               std::end(kUnsupportedTags)) {
      return ErrorAt(line, "unsupported tag '" + tag + "'");
    } else {
      return ErrorAt(line, "unknown tag '" + tag + "'");
    }
    return node;
  }

  // Parses a body closed by `{% end_tag %}` and consumes the closing tag.
  StatusOr<Body> ParseBodyUntil(std::string_view end_tag) {
    std::string found;
    TANDEM_ASSIGN_OR_RETURN(Body body, ParseBody({end_tag}, &found));
    TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    return body;
  }

  Status ParseIf(Node* node) {
    Advance();  // "if"; each "elif" is consumed by ParseBody
    IfNode result;
    std::string found;
    do {
      TANDEM_ASSIGN_OR_RETURN(ExprPtr condition, ParseTuple(false, false, {}, false));
      TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
      TANDEM_ASSIGN_OR_RETURN(Body body, ParseBody({"elif", "else", "endif"}, &found));
      result.branches.emplace_back(std::move(condition), std::move(body));
    } while (found == "elif");
    TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    if (found == "else") {
      TANDEM_ASSIGN_OR_RETURN(result.else_body, ParseBodyUntil("endif"));
    }
    node->data = std::move(result);
    return OkStatus();
  }

  // An assignment target: a name, a tuple of names, or (when allowed) `name.attribute`.
  Status ParseTargets(std::vector<std::string>* names, bool* unpack, std::string* attribute,
                      std::string_view end_name) {
    const bool parenthesized = SkipOp("(");
    while (true) {
      TANDEM_ASSIGN_OR_RETURN(std::string name, ExpectName());
      names->push_back(std::move(name));
      if (attribute != nullptr && names->size() == 1 && !parenthesized && IsOp(Current(), ".")) {
        Advance();
        TANDEM_ASSIGN_OR_RETURN(*attribute, ExpectName());
        return OkStatus();
      }
      if (!SkipOp(",")) break;
      *unpack = true;
      if ((parenthesized && IsOp(Current(), ")")) || IsName(Current(), end_name) ||
          IsOp(Current(), "=")) {
        break;
      }
    }
    if (parenthesized) {
      *unpack = true;
      TANDEM_RETURN_IF_ERROR(ExpectOp(")"));
    }
    return OkStatus();
  }

  Status ParseFor(Node* node) {
    Advance();
    ForNode result;
    TANDEM_RETURN_IF_ERROR(ParseTargets(&result.targets, &result.unpack, nullptr, "in"));
    if (!SkipName("in")) return Unexpected("'in'");
    TANDEM_ASSIGN_OR_RETURN(result.iterable, ParseTuple(false, false, {"recursive"}, false));
    if (SkipName("if")) {
      TANDEM_ASSIGN_OR_RETURN(result.filter, ParseExpression(true));
    }
    if (IsName(Current(), "recursive")) return ErrorAt(Line(), "unsupported recursive loop");
    TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    ++loop_depth_;
    std::string found;
    StatusOr<Body> body = ParseBody({"endfor", "else"}, &found);
    --loop_depth_;
    if (!body.ok()) return body.status();
    result.body = std::move(body).value();
    TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    if (found == "else") {
      TANDEM_ASSIGN_OR_RETURN(result.else_body, ParseBodyUntil("endfor"));
    }
    node->data = std::move(result);
    return OkStatus();
  }

  Status ParseSet(Node* node) {
    Advance();
    std::vector<std::string> targets;
    bool unpack = false;
    std::string attribute;
    TANDEM_RETURN_IF_ERROR(ParseTargets(&targets, &unpack, &attribute, ""));
    if (SkipOp("=")) {
      SetNode result{std::move(targets), unpack, std::move(attribute), nullptr};
      TANDEM_ASSIGN_OR_RETURN(result.value, ParseTuple(false, true, {}, false));
      TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
      node->data = std::move(result);
      return OkStatus();
    }
    if (unpack || !attribute.empty()) return Unexpected("'='");
    SetBlockNode result;
    result.target = targets[0];
    if (IsOp(Current(), "|")) {
      TANDEM_ASSIGN_OR_RETURN(result.filter, ParseFilter(nullptr, false));
    }
    TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    TANDEM_ASSIGN_OR_RETURN(result.body, ParseBodyUntil("endset"));
    node->data = std::move(result);
    return OkStatus();
  }

  Status ParseParameters(Parameters* parameters) {
    TANDEM_RETURN_IF_ERROR(ExpectOp("("));
    while (!IsOp(Current(), ")")) {
      if (!parameters->names.empty()) TANDEM_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(Current(), ")")) break;
      TANDEM_ASSIGN_OR_RETURN(std::string name, ExpectName());
      ExprPtr default_value;
      if (SkipOp("=")) {
        TANDEM_ASSIGN_OR_RETURN(default_value, ParseExpression(true));
      } else if (!parameters->defaults.empty() && parameters->defaults.back() != nullptr) {
        return ErrorAt(Line(), "non-default argument follows default argument");
      }
      parameters->names.push_back(std::move(name));
      parameters->defaults.push_back(std::move(default_value));
    }
    Advance();
    return OkStatus();
  }

  // Parses a macro or call-block body, noting whether it reads varargs, kwargs or caller.
  StatusOr<Body> ParseCallableBody(Parameters* parameters, std::string_view end_tag) {
    PushCallable(parameters);
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    StatusOr<Body> body = ParseBodyUntil(end_tag);
    loop_depth_ = saved_loop_depth;
    PopCallable();
    return body;
  }

  Status ParseMacro(Node* node) {
    Advance();
    MacroNode result;
    TANDEM_ASSIGN_OR_RETURN(result.name, ExpectName());
    TANDEM_RETURN_IF_ERROR(ParseParameters(&result.parameters));
    TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    TANDEM_ASSIGN_OR_RETURN(result.body, ParseCallableBody(&result.parameters, "endmacro"));
    node->data = std::move(result);
    return OkStatus();
  }

  Status ParseCallBlock(Node* node) {
    Advance();
    CallBlockNode result;
    if (IsOp(Current(), "(")) TANDEM_RETURN_IF_ERROR(ParseParameters(&result.parameters));
    const int line = Line();
    TANDEM_ASSIGN_OR_RETURN(result.call, ParseExpression(true));
    if (result.call->kind != ExprKind::kCall) return ErrorAt(line, "expected call");
    TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    TANDEM_ASSIGN_OR_RETURN(result.body, ParseCallableBody(&result.parameters, "endcall"));
    node->data = std::move(result);
    return OkStatus();
  }

  Status ParseWith(Node* node) {
    Advance();
    WithNode result;
    while (Current().kind != TokenKind::kBlockEnd) {
      if (!result.assignments.empty()) TANDEM_RETURN_IF_ERROR(ExpectOp(","));
      TANDEM_ASSIGN_OR_RETURN(std::string name, ExpectName());
      TANDEM_RETURN_IF_ERROR(ExpectOp("="));
      TANDEM_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      result.assignments.emplace_back(std::move(name), std::move(value));
    }
    Advance();
    TANDEM_ASSIGN_OR_RETURN(result.body, ParseBodyUntil("endwith"));
    node->data = std::move(result);
    return OkStatus();
  }

  int loop_depth_ = 0;
  int block_depth_ = 0;
};

}  // namespace

StatusOr<Body> ParseTemplate(std::string_view source) {
  TANDEM_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  return Parser(std::move(tokens)).ParseAll();
}

}  // namespace tandem::jinja
