// ServedModel: what the frontend needs of the model it serves: its public name, the tokenizer
// (prompts in, incremental detokenization out), the chat template and the sampling defaults of
// generation_config.json (temperature, top_p, top_k, repetition_penalty), which apply when a
// request leaves them out, as in vLLM.
//
// Thread safety: immutable after Load; shared by every request thread.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/chat_template.h"
#include "model/tokenizer/tokenizer.h"
#include "tandem/status.h"
#include "tandem/v1/common.pb.h"

namespace tandem::frontend {

class ServedModel {
 public:
  // `served_name` empty: the directory's base name.
  static StatusOr<std::unique_ptr<ServedModel>> Load(const std::filesystem::path& dir,
                                                     std::string served_name);

  const std::string& name() const { return name_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  // Null when the model has no chat template (chat requests are then refused).
  const model::ChatTemplate* chat_template() const { return chat_template_.get(); }
  // Sampling fields set from generation_config.json.
  const v1::SamplingParams& defaults() const { return defaults_; }

  // Renders a chat with the template and tokenizes it (the template writes the special
  // tokens). InvalidArgument for bad messages, template errors, or no template.
  StatusOr<std::vector<int32_t>> EncodeChat(const nlohmann::ordered_json& messages,
                                            const nlohmann::ordered_json& tools) const;
  // Tokenizes a text prompt with the model's special tokens (e.g. BOS).
  StatusOr<std::vector<int32_t>> EncodeText(std::string_view text) const;
  // Fills the sampling fields the request left unset from generation_config.json.
  void ApplyDefaults(v1::SamplingParams* sampling) const;

 private:
  ServedModel() = default;

  std::string name_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<model::ChatTemplate> chat_template_;
  v1::SamplingParams defaults_;
};

}  // namespace tandem::frontend
