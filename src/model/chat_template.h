// A model's chat template: the Jinja source from the model directory (chat_template.jinja, or
// the chat_template field of tokenizer_config.json) with the bos/eos token strings it expects,
// rendered the way transformers' apply_chat_template does.
//
// Thread safety: immutable after loading; Render may run on many threads.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "model/jinja/jinja.h"
#include "tandem/status.h"

namespace tandem::model {

class ChatTemplate {
 public:
  // Reads DIR/chat_template.jinja, else tokenizer_config.json's chat_template (a string, or a
  // list of {name, template} from which `name` is taken). NotFound when the model has none;
  // InvalidArgument, naming the file and line, when the template does not parse.
  static StatusOr<std::unique_ptr<ChatTemplate>> Load(const std::filesystem::path& model_dir,
                                                      std::string_view name = "default");
  static StatusOr<std::unique_ptr<ChatTemplate>> FromSource(std::string_view source,
                                                            std::string bos_token,
                                                            std::string eos_token,
                                                            std::string_view origin);

  // `messages`: an array of objects with a string "role" (content a string, null or a list of
  // parts; tool_calls etc. passed through). `tools`: null or an array of tool schemas. `extra`:
  // further template variables (e.g. date_string, enable_thinking). Ordered JSON keeps the keys
  // in the caller's order, as Python dicts do, so tool schemas print as transformers prints
  // them. Bad messages and template errors (raise_exception) are InvalidArgument.
  StatusOr<std::string> Render(
      const nlohmann::ordered_json& messages, bool add_generation_prompt,
      const nlohmann::ordered_json& tools = nullptr,
      const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }

 private:
  ChatTemplate(std::unique_ptr<jinja::Template> tmpl, std::string bos, std::string eos,
               std::string origin)
      : template_(std::move(tmpl)),
        bos_token_(std::move(bos)),
        eos_token_(std::move(eos)),
        origin_(std::move(origin)) {}

  std::unique_ptr<jinja::Template> template_;
  std::string bos_token_;
  std::string eos_token_;
  std::string origin_;  // Where the template came from, for error messages.
};

}  // namespace tandem::model
