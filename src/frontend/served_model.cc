#include "frontend/served_model.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "common/logging.h"

namespace tandem::frontend {

namespace {

// Reads the sampling defaults of DIR/generation_config.json, if there is one.
StatusOr<v1::SamplingParams> LoadDefaults(const std::filesystem::path& dir) {
  v1::SamplingParams d;
  const std::filesystem::path path = dir / "generation_config.json";
  std::ifstream in(path);
  if (!in) return d;
  const std::string text(std::istreambuf_iterator<char>(in), {});
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return InvalidArgumentError(path.string() + ": not a JSON object");
  // do_sample false means greedy in transformers.
  if (j.contains("do_sample") && j["do_sample"].is_boolean() && !j["do_sample"].get<bool>()) {
    d.set_temperature(0.0f);
  } else if (j.contains("temperature") && j["temperature"].is_number()) {
    d.set_temperature(j["temperature"].get<float>());
  }
  if (j.contains("top_p") && j["top_p"].is_number()) d.set_top_p(j["top_p"].get<float>());
  if (j.contains("top_k") && j["top_k"].is_number_integer()) d.set_top_k(j["top_k"].get<int>());
  if (j.contains("repetition_penalty") && j["repetition_penalty"].is_number()) {
    d.set_repetition_penalty(j["repetition_penalty"].get<float>());
  }
  return d;
}

}  // namespace

StatusOr<std::unique_ptr<ServedModel>> ServedModel::Load(const std::filesystem::path& dir,
                                                         std::string served_name) {
  if (!std::filesystem::is_directory(dir)) {
    return InvalidArgumentError("--model: '" + dir.string() + "' is not a directory");
  }
  std::unique_ptr<ServedModel> m(new ServedModel());
  m->name_ = served_name.empty() ? std::filesystem::absolute(dir).lexically_normal()
                                       .filename()
                                       .string()
                                 : std::move(served_name);
  if (m->name_.empty()) {  // A trailing slash leaves an empty file name.
    m->name_ = std::filesystem::absolute(dir).lexically_normal().parent_path().filename();
  }
  auto tok = tokenizer::LoadTokenizer(dir);
  if (!tok.ok()) return tok.status().WithContext("--model");
  m->tokenizer_ = std::move(tok).value();
  auto tmpl = model::ChatTemplate::Load(dir);
  if (tmpl.ok()) {
    m->chat_template_ = std::move(tmpl).value();
  } else if (tmpl.status().code() == StatusCode::kNotFound) {
    spdlog::warn("model has no chat template, chat completions are refused model={}",
                 Quoted(m->name_));
  } else {
    return tmpl.status().WithContext("--model");
  }
  auto defaults = LoadDefaults(dir);
  if (!defaults.ok()) return defaults.status().WithContext("--model");
  m->defaults_ = std::move(defaults).value();
  return m;
}

StatusOr<std::vector<int32_t>> ServedModel::EncodeChat(const nlohmann::ordered_json& messages,
                                                       const nlohmann::ordered_json& tools) const {
  if (chat_template_ == nullptr) {
    return InvalidArgumentError("model '" + name_ + "' has no chat template; use /v1/completions");
  }
  auto text = chat_template_->Render(messages, /*add_generation_prompt=*/true, tools);
  if (!text.ok()) {
    return InvalidArgumentError("the chat template failed: " + text.status().message());
  }
  auto ids = tokenizer_->Encode(*text, /*add_special_tokens=*/false);
  if (!ids.ok()) return InvalidArgumentError("messages: " + ids.status().message());
  return ids;
}

StatusOr<std::vector<int32_t>> ServedModel::EncodeText(std::string_view text) const {
  auto ids = tokenizer_->Encode(text, /*add_special_tokens=*/true);
  if (!ids.ok()) return InvalidArgumentError("prompt: " + ids.status().message());
  return ids;
}

void ServedModel::ApplyDefaults(v1::SamplingParams* sp) const {
  const v1::SamplingParams& d = defaults_;
  if (!sp->has_temperature() && d.has_temperature()) sp->set_temperature(d.temperature());
  if (!sp->has_top_p() && d.has_top_p()) sp->set_top_p(d.top_p());
  if (!sp->has_top_k() && d.has_top_k()) sp->set_top_k(d.top_k());
  if (!sp->has_repetition_penalty() && d.has_repetition_penalty()) {
    sp->set_repetition_penalty(d.repetition_penalty());
  }
}

}  // namespace tandem::frontend
