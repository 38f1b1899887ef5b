// One GET on the bench's HTTP client, collected whole: the model list, the server's metrics.
//
// Thread safety: uses the client from the calling thread only.
#pragma once

#include <string>

#include "cli/bench/http_client.h"
#include "cli/bench/url.h"
#include "tandem/status.h"

namespace tandem::bench {

// GET `path` (absolute, e.g. "/v1/models" or "/metrics"). Unavailable when the server cannot be
// reached, answers anything but 200, or takes longer than 30 s; the body otherwise (up to
// 16 MiB).
StatusOr<std::string> HttpGetBody(HttpClient& client, const ServerAddress& server,
                                  const std::string& path, const std::string& api_key);

}  // namespace tandem::bench
