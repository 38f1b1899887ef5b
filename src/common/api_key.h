// The API key that guards a frontend's public APIs (HTTP /v1 and gRPC tandem.v1.Inference):
// where it comes from, how a client's credentials are checked, and how it is kept out of `ps`.
//
// Thread safety: pure functions, except HideArgValue, which rewrites argv (call it from main
// before other threads start).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "tandem/status.h"

namespace tandem {

// The environment variable a key may come from (and how `tandem serve` hands it to the
// frontend, so it never appears on a command line).
inline constexpr char kApiKeyEnv[] = "TANDEM_API_KEY";

// The key from --api-key (`flag`), else --api-key-file (`file`: its first line, surrounding
// whitespace trimmed), else $TANDEM_API_KEY; nullopt when none is set. Errors: both the flag and
// the file given, the file unreadable, or the key empty.
StatusOr<std::optional<std::string>> ResolveApiKey(std::string_view flag, std::string_view file);

// True when `authorization` is "Bearer <key>" (the scheme name in any case, RFC 7235; spaces
// around the credentials ignored). The comparison takes the same time whatever the prefix that
// matches, so the key cannot be guessed byte by byte from response times.
bool BearerMatches(std::string_view authorization, std::string_view key);

// Overwrites the value of `option` in argv ("--api-key K" and "--api-key=K") with 'x's, so
// /proc/PID/cmdline (ps, top) no longer shows it. Parse the options before calling it.
void HideArgValue(int argc, char** argv, std::string_view option);

}  // namespace tandem
