#include "model/chat_template.h"

#include "common/file_util.h"
#include "common/status_macros.h"

namespace tandem::model {
namespace {

// tokenizer_config.json writes special tokens as a string or as an AddedToken object.
std::string TokenString(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  return "";
}

}  // namespace

StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromSource(std::string_view source,
                                                                 std::string bos_token,
                                                                 std::string eos_token,
                                                                 std::string_view origin) {
  auto parsed = jinja::Template::Parse(source);
  if (!parsed.ok()) return parsed.status().WithContext(origin);
  return std::unique_ptr<ChatTemplate>(new ChatTemplate(std::move(parsed).value(),
                                                        std::move(bos_token),
                                                        std::move(eos_token), std::string(origin)));
}

StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Load(const std::filesystem::path& dir,
                                                           std::string_view name) {
  nlohmann::json config = nlohmann::json::object();
  const std::filesystem::path config_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
    config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return InvalidArgumentError(config_path.string() + ": not a JSON object");
    }
  }
  const std::string bos = TokenString(config, "bos_token");
  const std::string eos = TokenString(config, "eos_token");

  const std::filesystem::path jinja_path = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja_path)) {
    TANDEM_ASSIGN_OR_RETURN(std::string source, ReadFileToString(jinja_path));
    return FromSource(source, bos, eos, jinja_path.string());
  }
  auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) {
    return NotFoundError(dir.string() + ": no chat template (chat_template.jinja or the "
                         "chat_template field of tokenizer_config.json)");
  }
  const std::string origin = config_path.string() + ": field 'chat_template'";
  if (it->is_string()) return FromSource(it->get<std::string>(), bos, eos, origin);
  if (it->is_array()) {
    // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
    for (const auto& entry : *it) {
      if (!entry.is_object()) break;
      auto n = entry.find("name");
      auto t = entry.find("template");
      if (n != entry.end() && n->is_string() && *n == name && t != entry.end() &&
          t->is_string()) {
        return FromSource(t->get<std::string>(), bos, eos, origin + "[" + std::string(name) + "]");
      }
    }
    return NotFoundError(origin + ": no template named '" + std::string(name) + "'");
  }
  return InvalidArgumentError(origin + " must be a string or a list of {name, template}");
}

StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages,
                                           bool add_generation_prompt,
                                           const nlohmann::ordered_json& tools,
                                           const nlohmann::ordered_json& extra) const {
  if (!messages.is_array()) return InvalidArgumentError("messages must be an array");
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (!m.is_object()) {
      return InvalidArgumentError("messages[" + std::to_string(i) + "] must be an object");
    }
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return InvalidArgumentError("messages[" + std::to_string(i) + "].role must be a string");
    }
  }
  if (!tools.is_null() && !tools.is_array()) return InvalidArgumentError("tools must be an array");
  if (!extra.is_object()) return InvalidArgumentError("template variables must be an object");

  nlohmann::ordered_json context = extra;
  context["messages"] = messages;
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = bos_token_;
  context["eos_token"] = eos_token_;
  if (!tools.is_null()) context["tools"] = tools;
  auto rendered = template_->RenderOrdered(context);
  if (!rendered.ok()) return rendered.status().WithContext(origin_);
  return rendered;
}

}  // namespace tandem::model
