#include "frontend/openai_response.h"

#include <map>
#include <vector>

namespace tandem::frontend {

namespace {

using Json = nlohmann::json;

Json NullOr(std::string_view s) { return s.empty() ? Json(nullptr) : Json(std::string(s)); }
Json NullOr(const char* s) { return s == nullptr ? Json(nullptr) : Json(s); }

// The token's own text. A byte-level piece that is part of a character decodes to U+FFFD; its
// bytes are still right in "bytes" only where the tokenizer decodes bytes faithfully.
std::string TokenText(const tokenizer::Tokenizer& tokenizer, int32_t id) {
  auto text = tokenizer.Decode(std::span<const int32_t>(&id, 1), /*skip_special_tokens=*/false);
  return text.ok() ? *text : std::string();
}

Json Bytes(const std::string& s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// Json's dump refuses invalid UTF-8 by throwing; replace it instead.
std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

std::string ErrorBody(std::string_view message, std::string_view type, std::string_view param,
                      std::string_view code) {
  return Dump(Json{{"error",
                    {{"message", std::string(message)},
                     {"type", std::string(type)},
                     {"param", NullOr(param)},
                     {"code", NullOr(code)}}}});
}

Json UsageJson(int prompt_tokens, int completion_tokens, int cached_prompt_tokens) {
  return Json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", cached_prompt_tokens}}}};
}

Json ChatLogprobs(const tokenizer::Tokenizer& tokenizer,
                  std::span<const v1::GeneratedToken> tokens) {
  Json content = Json::array();
  for (const v1::GeneratedToken& t : tokens) {
    const std::string text = TokenText(tokenizer, t.token());
    Json top = Json::array();
    for (const v1::TokenLogprob& alt : t.top_logprobs()) {
      const std::string alt_text = TokenText(tokenizer, alt.token());
      top.push_back(
          Json{{"token", alt_text}, {"logprob", alt.logprob()}, {"bytes", Bytes(alt_text)}});
    }
    content.push_back(Json{{"token", text},
                           {"logprob", t.logprob()},
                           {"bytes", Bytes(text)},
                           {"top_logprobs", std::move(top)}});
  }
  return Json{{"content", std::move(content)}};
}

Json CompletionLogprobs(const tokenizer::Tokenizer& tokenizer,
                        std::span<const v1::GeneratedToken> tokens,
                        std::span<const size_t> text_offsets, bool with_top) {
  Json texts = Json::array(), lps = Json::array(), tops = Json::array(), offs = Json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const v1::GeneratedToken& t = tokens[i];
    texts.push_back(TokenText(tokenizer, t.token()));
    lps.push_back(t.logprob());
    Json top = Json::object();
    for (const v1::TokenLogprob& alt : t.top_logprobs()) {
      top[TokenText(tokenizer, alt.token())] = alt.logprob();
    }
    tops.push_back(std::move(top));
    offs.push_back(i < text_offsets.size() ? text_offsets[i] : 0);
  }
  return Json{{"tokens", std::move(texts)},
              {"token_logprobs", std::move(lps)},
              {"top_logprobs", with_top ? std::move(tops) : Json(nullptr)},
              {"text_offset", std::move(offs)}};
}

Json ChatCompletion(const ResponseHeader& h, const std::string& text, const char* finish_reason,
                    Json logprobs, Json usage) {
  Json choice = {{"index", 0},
                 {"message", {{"role", "assistant"}, {"content", text}}},
                 {"logprobs", std::move(logprobs)},
                 {"finish_reason", NullOr(finish_reason)}};
  return Json{{"id", h.id},           {"object", "chat.completion"},
              {"created", h.created}, {"model", h.model},
              {"choices", Json::array({std::move(choice)})}, {"usage", std::move(usage)}};
}

Json Completion(const ResponseHeader& h, const std::string& text, const char* finish_reason,
                Json logprobs, Json usage) {
  Json choice = {{"index", 0},
                 {"text", text},
                 {"logprobs", std::move(logprobs)},
                 {"finish_reason", NullOr(finish_reason)}};
  return Json{{"id", h.id},           {"object", "text_completion"},
              {"created", h.created}, {"model", h.model},
              {"choices", Json::array({std::move(choice)})}, {"usage", std::move(usage)}};
}

Json ChatChunk(const ResponseHeader& h, Json delta, const char* finish_reason, Json logprobs,
               bool usage_field) {
  Json choice = {{"index", 0},
                 {"delta", std::move(delta)},
                 {"logprobs", std::move(logprobs)},
                 {"finish_reason", NullOr(finish_reason)}};
  Json j = {{"id", h.id},           {"object", "chat.completion.chunk"},
            {"created", h.created}, {"model", h.model},
            {"choices", Json::array({std::move(choice)})}};
  if (usage_field) j["usage"] = nullptr;
  return j;
}

Json CompletionChunk(const ResponseHeader& h, const std::string& text, const char* finish_reason,
                     Json logprobs, bool usage_field) {
  Json choice = {{"index", 0},
                 {"text", text},
                 {"logprobs", std::move(logprobs)},
                 {"finish_reason", NullOr(finish_reason)}};
  Json j = {{"id", h.id},           {"object", "text_completion"},
            {"created", h.created}, {"model", h.model},
            {"choices", Json::array({std::move(choice)})}};
  if (usage_field) j["usage"] = nullptr;
  return j;
}

Json UsageChunk(const ResponseHeader& h, bool chat, Json usage) {
  return Json{{"id", h.id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", h.created},
              {"model", h.model},
              {"choices", Json::array()},
              {"usage", std::move(usage)}};
}

std::string JsonText(const Json& j) { return Dump(j); }

std::string SseEvent(const Json& j) { return "data: " + Dump(j) + "\n\n"; }

}  // namespace tandem::frontend
