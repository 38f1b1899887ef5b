// JSON bodies of OpenAI responses: errors, usage, logprobs, whole responses and SSE chunks of
// chat completions and completions, shaped exactly as OpenAI's API returns them.
//
// Thread safety: pure functions (the tokenizer is only read).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "model/tokenizer/tokenizer.h"
#include "tandem/v1/common.pb.h"

namespace tandem::frontend {

// {"error": {"message", "type", "param", "code"}}; empty param / code become null.
std::string ErrorBody(std::string_view message, std::string_view type, std::string_view param,
                      std::string_view code);

// OpenAI's usage object, with prompt_tokens_details.cached_tokens.
nlohmann::json UsageJson(int prompt_tokens, int completion_tokens, int cached_prompt_tokens);

// Chat format: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}.
nlohmann::json ChatLogprobs(const tokenizer::Tokenizer& tokenizer,
                            std::span<const v1::GeneratedToken> tokens);

// Completions format: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}.
nlohmann::json CompletionLogprobs(const tokenizer::Tokenizer& tokenizer,
                                  std::span<const v1::GeneratedToken> tokens,
                                  std::span<const size_t> text_offsets, bool with_top);

// The identity every object of one response shares.
struct ResponseHeader {
  std::string id;  // "chatcmpl-…" or "cmpl-…"
  int64_t created = 0;
  std::string model;
};

// A choice of a whole (non-streaming) response: chat → "message", completion → "text".
nlohmann::json ChatCompletion(const ResponseHeader& h, const std::string& text,
                              const char* finish_reason, nlohmann::json logprobs,
                              nlohmann::json usage);
nlohmann::json Completion(const ResponseHeader& h, const std::string& text,
                          const char* finish_reason, nlohmann::json logprobs,
                          nlohmann::json usage);

// One streamed chunk with one choice. `finish_reason` null while the stream goes on. With
// `usage_field`, the chunk carries "usage": null (OpenAI does so when include_usage is set).
nlohmann::json ChatChunk(const ResponseHeader& h, nlohmann::json delta, const char* finish_reason,
                         nlohmann::json logprobs, bool usage_field);
nlohmann::json CompletionChunk(const ResponseHeader& h, const std::string& text,
                               const char* finish_reason, nlohmann::json logprobs,
                               bool usage_field);
// The last chunk under include_usage: no choices, the usage.
nlohmann::json UsageChunk(const ResponseHeader& h, bool chat, nlohmann::json usage);

// Serialized JSON; invalid UTF-8 in strings becomes U+FFFD (never an exception).
std::string JsonText(const nlohmann::json& j);

// "data: <json>\n\n".
std::string SseEvent(const nlohmann::json& j);

}  // namespace tandem::frontend
