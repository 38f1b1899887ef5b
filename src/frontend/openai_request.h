// Parsing and validation of OpenAI request bodies (POST /v1/chat/completions and
// /v1/completions) into an OpenAiRequest. Unknown fields are ignored, null means absent, and
// every error is InvalidArgument with a message naming the field (`param` receives its name).
// OpenAI fields tandem does not implement yet (response_format other than text, logit_bias,
// tool_choice other than auto/none, suffix, best_of > 1, echo, n > 1, ...) are refused rather
// than ignored. Message content given as a list of parts becomes the text parts joined by
// newlines; other part types are refused.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tandem/status.h"
#include "tandem/v1/common.pb.h"

namespace tandem::frontend {

enum class ApiKind { kChat, kCompletion };

struct OpenAiRequest {
  ApiKind kind = ApiKind::kChat;
  std::string model;  // Empty when the client left it out.
  // Chat: the messages (ordered: the template sees the client's key order) and tools.
  nlohmann::ordered_json messages;
  nlohmann::ordered_json tools;  // null when absent.
  // Completions: the prompt, as text or as token ids.
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_ids;
  // Sampling as given (fields the client set are set); max_tokens among them.
  v1::SamplingParams sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Chat: logprobs true; completions: logprobs N. top_logprobs in sampling.
  bool logprobs = false;
  bool skip_special_tokens = true;  // Extension (vLLM's name).
};

// A chat message's role as the chat template sees it ("developer" becomes "system"); an unknown
// role is InvalidArgument.
StatusOr<std::string> ChatRole(std::string_view role);

StatusOr<OpenAiRequest> ParseOpenAiRequest(ApiKind kind, std::string_view body,
                                           std::string* param);

}  // namespace tandem::frontend
