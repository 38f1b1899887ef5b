#include "model/jinja/interpreter.h"

#include <memory>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "common/status_macros.h"
#include "model/jinja/operators.h"

namespace tandem::jinja {
namespace {

// Macro calls nested deeper than this fail instead of exhausting the stack.
constexpr int kMaxCallDepth = 200;

// A frame of variables. Scopes live until the render ends, so macros may keep their defining
// scope (jinja2 closures) without reference cycles.
struct Scope {
  Scope* parent = nullptr;
  std::unordered_map<std::string, Value> vars;
};

using ScopePtr = Scope*;

enum class Flow { kNormal, kBreak, kContinue };

// Prefixes the line to an error of a built-in operation, filter, test or function (template code
// run by a macro names its own lines).
Status Locate(int line, const Status& status) {
  return Status(status.code(), "line " + std::to_string(line) + ": " + status.message());
}

template <typename T>
StatusOr<T> Locate(int line, StatusOr<T> result) {
  if (result.ok()) return result;
  return Locate(line, result.status());
}

class Interpreter {
 public:
  explicit Interpreter(const Dict& context) : context_(context) {}

  StatusOr<std::string> Run(const Body& body) {
    std::string out;
    TANDEM_RETURN_IF_ERROR(ExecBody(body, NewScope(nullptr), &out).status());
    return out;
  }

 private:
  // ---- statements ----------------------------------------------------------------------------

  StatusOr<Flow> ExecBody(const Body& body, ScopePtr scope, std::string* out) {
    for (const NodePtr& node : body) {
      TANDEM_ASSIGN_OR_RETURN(const Flow flow, Exec(*node, scope, out));
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  StatusOr<Flow> Exec(const Node& node, ScopePtr scope, std::string* out) {
    if (const auto* text = std::get_if<TextNode>(&node.data)) {
      *out += text->text;
    } else if (const auto* output = std::get_if<OutputNode>(&node.data)) {
      TANDEM_ASSIGN_OR_RETURN(const Value value, Eval(*output->expr, scope));
      *out += ToStr(value);
    } else if (const auto* if_node = std::get_if<IfNode>(&node.data)) {
      for (const auto& [condition, body] : if_node->branches) {
        TANDEM_ASSIGN_OR_RETURN(const Value value, Eval(*condition, scope));
        if (Truthy(value)) return ExecBody(body, scope, out);
      }
      return ExecBody(if_node->else_body, scope, out);
    } else if (const auto* for_node = std::get_if<ForNode>(&node.data)) {
      TANDEM_RETURN_IF_ERROR(ExecFor(*for_node, node.line, scope, out));
    } else if (const auto* set = std::get_if<SetNode>(&node.data)) {
      TANDEM_ASSIGN_OR_RETURN(Value value, Eval(*set->value, scope));
      TANDEM_RETURN_IF_ERROR(Locate(node.line, Assign(*set, std::move(value), scope)));
    } else if (const auto* set_block = std::get_if<SetBlockNode>(&node.data)) {
      std::string text;
      TANDEM_RETURN_IF_ERROR(ExecBody(set_block->body, scope, &text).status());
      Value value = Value::String(std::move(text));
      if (set_block->filter != nullptr) {
        TANDEM_ASSIGN_OR_RETURN(value, EvalFilter(*set_block->filter, scope, &value));
      }
      scope->vars[set_block->target] = std::move(value);
    } else if (const auto* macro = std::get_if<MacroNode>(&node.data)) {
      scope->vars[macro->name] = MakeMacro(macro->name, macro->parameters, macro->body, scope);
    } else if (const auto* call_block = std::get_if<CallBlockNode>(&node.data)) {
      const Value caller = MakeMacro("caller", call_block->parameters, call_block->body, scope);
      TANDEM_ASSIGN_OR_RETURN(const Value value, EvalCall(*call_block->call, scope, &caller));
      *out += ToStr(value);
    } else if (const auto* with = std::get_if<WithNode>(&node.data)) {
      const ScopePtr inner = NewScope(scope);
      for (const auto& [name, expr] : with->assignments) {
        TANDEM_ASSIGN_OR_RETURN(inner->vars[name], Eval(*expr, scope));
      }
      return ExecBody(with->body, inner, out);
    } else if (const auto* filter_block = std::get_if<FilterBlockNode>(&node.data)) {
      std::string text;
      TANDEM_RETURN_IF_ERROR(ExecBody(filter_block->body, NewScope(scope), &text).status());
      const Value input = Value::String(std::move(text));
      TANDEM_ASSIGN_OR_RETURN(const Value value, EvalFilter(*filter_block->filter, scope, &input));
      *out += ToStr(value);
    } else if (const auto* control = std::get_if<LoopControlNode>(&node.data)) {
      return control->is_break ? Flow::kBreak : Flow::kContinue;
    } else if (const auto* generation = std::get_if<GenerationNode>(&node.data)) {
      return ExecBody(generation->body, scope, out);
    }
    return Flow::kNormal;
  }

  static Status Bind(const std::vector<std::string>& targets, bool unpack, Value value,
                     Scope* scope) {
    if (!unpack) {
      scope->vars[targets[0]] = std::move(value);
      return OkStatus();
    }
    TANDEM_ASSIGN_OR_RETURN(const ValueList items, Iterate(value));
    if (items.size() < targets.size()) {
      return InvalidArgumentError("not enough values to unpack (expected " +
                                  std::to_string(targets.size()) + ", got " +
                                  std::to_string(items.size()) + ")");
    }
    if (items.size() > targets.size()) {
      return InvalidArgumentError("too many values to unpack (expected " +
                                  std::to_string(targets.size()) + ")");
    }
    for (size_t i = 0; i < targets.size(); ++i) scope->vars[targets[i]] = items[i];
    return OkStatus();
  }

  Status Assign(const SetNode& set, Value value, ScopePtr scope) {
    if (set.attribute.empty()) return Bind(set.targets, set.unpack, std::move(value), scope);
    const Value target = Lookup(set.targets[0], scope);
    if (target.kind() != Value::Kind::kObject || target.object().type != Object::Type::kNamespace) {
      return InvalidArgumentError("cannot assign attribute on non-namespace object");
    }
    target.object().attributes.Set(Value::String(set.attribute), std::move(value));
    return OkStatus();
  }

  Status ExecFor(const ForNode& node, int line, ScopePtr scope, std::string* out) {
    TANDEM_ASSIGN_OR_RETURN(const Value iterable, Eval(*node.iterable, scope));
    TANDEM_ASSIGN_OR_RETURN(ValueList items, Locate(line, Iterate(iterable)));
    if (node.filter != nullptr) {
      ValueList kept;
      for (Value& item : items) {
        const ScopePtr probe = NewScope(scope);
        TANDEM_RETURN_IF_ERROR(Locate(line, Bind(node.targets, node.unpack, item, probe)));
        TANDEM_ASSIGN_OR_RETURN(const Value keep, Eval(*node.filter, probe));
        if (Truthy(keep)) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) return ExecBody(node.else_body, scope, out).status();
    const auto shared_items = std::make_shared<const ValueList>(std::move(items));
    const auto last_changed = std::make_shared<Value>();
    for (size_t i = 0; i < shared_items->size(); ++i) {
      const ScopePtr iteration = NewScope(scope);
      TANDEM_RETURN_IF_ERROR(
          Locate(line, Bind(node.targets, node.unpack, (*shared_items)[i], iteration)));
      auto loop = std::make_shared<Object>();
      loop->type = Object::Type::kLoop;
      loop->loop_items = shared_items;
      loop->loop_index = i;
      loop->loop_changed = last_changed;
      iteration->vars["loop"] = Value::FromObject(std::move(loop));
      TANDEM_ASSIGN_OR_RETURN(const Flow flow, ExecBody(node.body, iteration, out));
      if (flow == Flow::kBreak) break;
    }
    return OkStatus();
  }

  // A macro (or a call block's `caller`): a callable rendering `body` in a scope whose parent is
  // the defining scope.
  Value MakeMacro(const std::string& name, const Parameters& parameters, const Body& body,
                  ScopePtr closure) {
    return Value::FromCallable(
        name,
        [this, name, &parameters, &body, closure](CallArgs args) {
          return CallMacro(name, parameters, body, closure, std::move(args));
        },
        /*is_macro=*/true);
  }

  StatusOr<Value> CallMacro(const std::string& name, const Parameters& parameters, const Body& body,
                            ScopePtr closure, CallArgs args) {
    if (depth_ >= kMaxCallDepth) {
      return Locate(call_line_, InvalidArgumentError("maximum recursion depth exceeded"));
    }
    const ScopePtr scope = NewScope(closure);
    TANDEM_RETURN_IF_ERROR(
        Locate(call_line_, BindMacroArguments(name, parameters, std::move(args), scope)));
    for (size_t i = 0; i < parameters.names.size(); ++i) {
      if (scope->vars.count(parameters.names[i]) != 0) continue;
      if (parameters.defaults[i] != nullptr) {
        TANDEM_ASSIGN_OR_RETURN(scope->vars[parameters.names[i]],
                                Eval(*parameters.defaults[i], scope));
      } else {
        scope->vars[parameters.names[i]] =
            Value::Undefined("parameter '" + parameters.names[i] + "' was not provided");
      }
    }
    std::string out;
    ++depth_;
    const StatusOr<Flow> flow = ExecBody(body, scope, &out);
    --depth_;
    if (!flow.ok()) return flow.status();
    return Value::String(std::move(out));
  }

  // Binds a macro's arguments as jinja2 does: extra positional arguments go to `varargs` and
  // unknown keywords to `kwargs` when the body reads them, and are errors otherwise.
  static Status BindMacroArguments(const std::string& name, const Parameters& parameters,
                                   CallArgs args, Scope* scope) {
    const size_t n = parameters.names.size();
    ValueList varargs;
    std::vector<bool> given(n, false);
    for (size_t i = 0; i < args.positional.size(); ++i) {
      if (i < n) {
        scope->vars[parameters.names[i]] = std::move(args.positional[i]);
        given[i] = true;
      } else if (parameters.uses_varargs) {
        varargs.push_back(std::move(args.positional[i]));
      } else {
        return TypeError("macro '" + name + "' takes not more than " + std::to_string(n) +
                         " argument(s)");
      }
    }
    Dict kwargs;
    for (auto& [key, value] : args.keyword) {
      const auto it = std::find(parameters.names.begin(), parameters.names.end(), key);
      if (it != parameters.names.end()) {
        const auto i = static_cast<size_t>(it - parameters.names.begin());
        if (given[i]) {
          return TypeError("macro '" + name + "' got multiple values for argument '" + key + "'");
        }
        scope->vars[key] = std::move(value);
        given[i] = true;
      } else if (key == "caller" && parameters.uses_caller) {
        scope->vars["caller"] = std::move(value);
      } else if (parameters.uses_kwargs) {
        kwargs.Set(Value::String(key), std::move(value));
      } else {
        return TypeError("macro '" + name + "' takes no keyword argument '" + key + "'");
      }
    }
    scope->vars["varargs"] = Value::Tuple(std::move(varargs));
    scope->vars["kwargs"] = Value::FromDict(std::move(kwargs));
    return OkStatus();
  }

  // ---- expressions ---------------------------------------------------------------------------

  Value Lookup(const std::string& name, ScopePtr scope) const {
    for (const Scope* s = scope; s != nullptr; s = s->parent) {
      const auto it = s->vars.find(name);
      if (it != s->vars.end()) return it->second;
    }
    if (const Value* v = context_.Find(name)) return *v;
    if (const Value* v = Globals().Find(name)) return *v;
    return Value::Undefined("'" + name + "' is undefined");
  }

  StatusOr<CallArgs> EvalArguments(const Arguments& arguments, ScopePtr scope) {
    CallArgs args;
    for (const ExprPtr& expr : arguments.positional) {
      TANDEM_ASSIGN_OR_RETURN(Value v, Eval(*expr, scope));
      args.positional.push_back(std::move(v));
    }
    for (const auto& [key, expr] : arguments.keyword) {
      TANDEM_ASSIGN_OR_RETURN(Value v, Eval(*expr, scope));
      args.keyword.emplace_back(key, std::move(v));
    }
    return args;
  }

  // A filter chain; `input` replaces the innermost missing operand (filter blocks).
  StatusOr<Value> EvalFilter(const Expr& expr, ScopePtr scope, const Value* input) {
    Value value;
    if (expr.children[0] == nullptr) {
      value = *input;
    } else if (expr.children[0]->kind == ExprKind::kFilter && input != nullptr) {
      TANDEM_ASSIGN_OR_RETURN(value, EvalFilter(*expr.children[0], scope, input));
    } else {
      TANDEM_ASSIGN_OR_RETURN(value, Eval(*expr.children[0], scope));
    }
    TANDEM_ASSIGN_OR_RETURN(const CallArgs args, EvalArguments(expr.arguments, scope));
    return Locate(expr.line, expr.filter(value, args));
  }

  StatusOr<Value> EvalCall(const Expr& expr, ScopePtr scope, const Value* caller) {
    TANDEM_ASSIGN_OR_RETURN(const Value callee, Eval(*expr.children[0], scope));
    TANDEM_ASSIGN_OR_RETURN(CallArgs args, EvalArguments(expr.arguments, scope));
    if (caller != nullptr) args.keyword.emplace_back("caller", *caller);
    if (callee.is_undefined()) {
      return Locate(expr.line, InvalidArgumentError(callee.undefined_hint()));
    }
    if (callee.kind() != Value::Kind::kCallable) {
      return Locate(expr.line, TypeError("'" + TypeName(callee) + "' object is not callable"));
    }
    if (!callee.callable().is_macro) {
      return Locate(expr.line, callee.callable().function(std::move(args)));
    }
    // A macro locates the errors of its body itself, and its argument errors at this line.
    const int saved_line = call_line_;
    call_line_ = expr.line;
    StatusOr<Value> result = callee.callable().function(std::move(args));
    call_line_ = saved_line;
    return result;
  }

  StatusOr<Value> EvalOptional(const ExprPtr& expr, ScopePtr scope) {
    if (expr == nullptr) return Value::None();
    return Eval(*expr, scope);
  }

  StatusOr<Value> Eval(const Expr& expr, ScopePtr scope) {
    switch (expr.kind) {
      case ExprKind::kLiteral:
        return expr.literal;
      case ExprKind::kName:
        return Lookup(expr.name, scope);
      case ExprKind::kList:
      case ExprKind::kTuple: {
        ValueList items;
        for (const ExprPtr& child : expr.children) {
          TANDEM_ASSIGN_OR_RETURN(Value v, Eval(*child, scope));
          items.push_back(std::move(v));
        }
        return expr.kind == ExprKind::kList ? Value::List(std::move(items))
                                            : Value::Tuple(std::move(items));
      }
      case ExprKind::kDict: {
        Dict dict;
        for (size_t i = 0; i + 1 < expr.children.size(); i += 2) {
          TANDEM_ASSIGN_OR_RETURN(Value key, Eval(*expr.children[i], scope));
          TANDEM_ASSIGN_OR_RETURN(Value value, Eval(*expr.children[i + 1], scope));
          if (key.kind() == Value::Kind::kList || key.is_dict() || key.is_undefined()) {
            return Locate(expr.line, TypeError("unhashable type: '" + TypeName(key) + "'"));
          }
          dict.Set(std::move(key), std::move(value));
        }
        return Value::FromDict(std::move(dict));
      }
      case ExprKind::kGetAttr: {
        TANDEM_ASSIGN_OR_RETURN(const Value obj, Eval(*expr.children[0], scope));
        return Locate(expr.line, GetAttr(obj, expr.name));
      }
      case ExprKind::kGetItem: {
        TANDEM_ASSIGN_OR_RETURN(const Value obj, Eval(*expr.children[0], scope));
        TANDEM_ASSIGN_OR_RETURN(const Value key, Eval(*expr.children[1], scope));
        return Locate(expr.line, GetItem(obj, key));
      }
      case ExprKind::kSlice: {
        TANDEM_ASSIGN_OR_RETURN(const Value obj, Eval(*expr.children[0], scope));
        TANDEM_ASSIGN_OR_RETURN(const Value start, EvalOptional(expr.children[1], scope));
        TANDEM_ASSIGN_OR_RETURN(const Value stop, EvalOptional(expr.children[2], scope));
        TANDEM_ASSIGN_OR_RETURN(const Value step, EvalOptional(expr.children[3], scope));
        return Locate(expr.line, Slice(obj, start, stop, step));
      }
      case ExprKind::kCall:
        return EvalCall(expr, scope, nullptr);
      case ExprKind::kFilter:
        return EvalFilter(expr, scope, nullptr);
      case ExprKind::kTest: {
        TANDEM_ASSIGN_OR_RETURN(const Value value, Eval(*expr.children[0], scope));
        TANDEM_ASSIGN_OR_RETURN(const CallArgs args, EvalArguments(expr.arguments, scope));
        TANDEM_ASSIGN_OR_RETURN(const bool result, Locate(expr.line, expr.test(value, args)));
        return Value::Bool(result != expr.negate);
      }
      case ExprKind::kNeg:
      case ExprKind::kPos: {
        TANDEM_ASSIGN_OR_RETURN(const Value value, Eval(*expr.children[0], scope));
        return Locate(expr.line, expr.kind == ExprKind::kNeg ? Negate(value) : UnaryPlus(value));
      }
      case ExprKind::kNot: {
        TANDEM_ASSIGN_OR_RETURN(const Value value, Eval(*expr.children[0], scope));
        return Value::Bool(!Truthy(value));
      }
      case ExprKind::kAnd:
      case ExprKind::kOr: {
        TANDEM_ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], scope));
        if (Truthy(left) == (expr.kind == ExprKind::kOr)) return left;
        return Eval(*expr.children[1], scope);
      }
      case ExprKind::kBinary: {
        TANDEM_ASSIGN_OR_RETURN(const Value left, Eval(*expr.children[0], scope));
        TANDEM_ASSIGN_OR_RETURN(const Value right, Eval(*expr.children[1], scope));
        return Locate(expr.line, BinaryOperation(expr.binary_op, left, right));
      }
      case ExprKind::kConcat: {
        std::string text;
        for (const ExprPtr& child : expr.children) {
          TANDEM_ASSIGN_OR_RETURN(const Value v, Eval(*child, scope));
          text += ToStr(v);
        }
        return Value::String(std::move(text));
      }
      case ExprKind::kCompare: {
        TANDEM_ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], scope));
        for (size_t i = 0; i < expr.compare_ops.size(); ++i) {
          TANDEM_ASSIGN_OR_RETURN(Value right, Eval(*expr.children[i + 1], scope));
          TANDEM_ASSIGN_OR_RETURN(
              const bool holds, Locate(expr.line, CompareValues(expr.compare_ops[i], left, right)));
          if (!holds) return Value::Bool(false);
          left = std::move(right);
        }
        return Value::Bool(true);
      }
      case ExprKind::kCondition: {
        TANDEM_ASSIGN_OR_RETURN(const Value condition, Eval(*expr.children[1], scope));
        if (Truthy(condition)) return Eval(*expr.children[0], scope);
        if (expr.children[2] != nullptr) return Eval(*expr.children[2], scope);
        return Value::Undefined("the inline if-expression on line " + std::to_string(expr.line) +
                                " evaluated to false and no else section was defined.");
      }
    }
    return InternalError("unknown expression");
  }

  Scope* NewScope(Scope* parent) {
    scopes_.push_back(std::make_unique<Scope>());
    scopes_.back()->parent = parent;
    return scopes_.back().get();
  }

  const Dict& context_;
  int depth_ = 0;      // macro calls in progress
  int call_line_ = 0;  // line of the innermost macro call being evaluated
  std::vector<std::unique_ptr<Scope>> scopes_;
};

}  // namespace

StatusOr<std::string> RenderBody(const Body& body, const Dict& context) {
  return Interpreter(context).Run(body);
}

}  // namespace tandem::jinja
