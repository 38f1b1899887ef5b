#include <utility>

#include "common/status_macros.h"
#include "model/jinja/ast.h"
#include "model/jinja/interpreter.h"
#include "model/jinja/jinja.h"
#include "model/jinja/parser.h"

namespace tandem::jinja {
namespace {

template <typename Json>
StatusOr<std::string> RenderJson(const Body& body, const Json& context) {
  if (!context.is_object()) {
    return InvalidArgumentError("chat template context must be a JSON object");
  }
  StatusOr<Value> variables = InvalidArgumentError("unconverted");
  try {
    variables = Value::FromJson(context);
  } catch (const std::exception& e) {  // nlohmann::json may throw; nothing may escape
    return InvalidArgumentError(std::string("chat template context: ") + e.what());
  }
  if (!variables.ok()) return variables.status().WithContext("chat template context");
  return RenderBody(body, variables->dict());
}

}  // namespace

struct Template::Impl {
  Body body;
};

Template::Template(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Template::~Template() = default;

StatusOr<std::unique_ptr<Template>> Template::Parse(std::string_view source) {
  auto impl = std::make_unique<Impl>();
  TANDEM_ASSIGN_OR_RETURN(impl->body, ParseTemplate(source));
  return std::unique_ptr<Template>(new Template(std::move(impl)));
}

StatusOr<std::string> Template::Render(const nlohmann::json& context) const {
  return RenderJson(impl_->body, context);
}

StatusOr<std::string> Template::RenderOrdered(const nlohmann::ordered_json& context) const {
  return RenderJson(impl_->body, context);
}

}  // namespace tandem::jinja
