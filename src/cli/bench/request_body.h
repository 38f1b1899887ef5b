// What `tandem bench` sends: OpenAI request bodies (streaming, usage on, output length forced
// with max_tokens and ignore_eos) and the HTTP/1.1 request around them.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cli/bench/dataset.h"
#include "cli/bench/token_space.h"

namespace tandem::bench {

enum class Endpoint { kCompletions, kChat };

// "completions" | "chat".
StatusOr<Endpoint> ParseEndpoint(std::string_view name);
std::string_view EndpointPath(Endpoint endpoint);  // "/completions" or "/chat/completions"

struct BodyOptions {
  // The "model" member; the server's default model when empty is the server's business.
  std::string model;
  // Completions take token ids or text; chat takes text only.
  Endpoint endpoint = Endpoint::kCompletions;
  // Where prompt token ids come from (vocabulary size and seed).
  TokenSpace tokens{32000, 0};
  // Tokens per Mooncake hash id.
  int block_size = 512;
};

// The JSON body of request `index`: completions carry `"prompt": [ids...]` (or the text of a
// text request), chat carries the text as one user message. A token-id request cannot be a
// chat request; callers check with CanSend.
std::string RequestBody(const RequestSpec& spec, uint64_t index, const BodyOptions& options);

// Whether `spec` can go to `endpoint` (chat needs text).
bool CanSend(const RequestSpec& spec, Endpoint endpoint);

// A complete HTTP/1.1 request (keep-alive; Authorization: Bearer when api_key is not empty).
// An empty body makes a GET.
std::string HttpRequest(std::string_view path, std::string_view host_header,
                        std::string_view api_key, std::string_view body);

}  // namespace tandem::bench
