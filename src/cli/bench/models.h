// GET /v1/models: the served models' names and, where the server says (tandem does), their
// vocabulary size, which token-id prompts must stay inside.
//
// Thread safety: uses the client from the calling thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli/bench/http_client.h"
#include "cli/bench/url.h"
#include "tandem/status.h"

namespace tandem::bench {

struct ServedModel {
  std::string id;
  std::optional<int64_t> vocab_size;
  std::string owned_by;  // "tandem" for tandem's frontend.
};

// The models the server lists, in its order. Unavailable when the server cannot be reached or
// answers an error; InvalidArgument when the answer is not an OpenAI model list. Bounded by the
// client's timeouts and by 30 s.
StatusOr<std::vector<ServedModel>> ListModels(HttpClient& client, const ServerAddress& server,
                                              const std::string& api_key);

}  // namespace tandem::bench
