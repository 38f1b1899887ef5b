// What `tandem bench` needs from one streamed OpenAI chunk (a completion or chat.completion.chunk
// event), read by a single pass over the JSON text without building a document: whether it
// carries generated text, the usage counts, and a server error.
//
// The scanner validates the JSON's structure (a malformed event is a stream error) but keeps only
// these fields; it allocates nothing.
//
// Thread safety: pure function.
#pragma once

#include <cstdint>
#include <string_view>

#include "tandem/status.h"

namespace tandem::bench {

struct StreamChunk {
  // choices[].text, choices[].delta.content or choices[].delta.reasoning_content is non-empty.
  bool has_content = false;
  // From "usage" when present and not null; -1 when absent.
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
  // usage.prompt_tokens_details.cached_tokens; -1 when absent (unknown).
  int64_t cached_tokens = -1;
  // A top-level "error" member (a server error reported mid-stream).
  bool is_error = false;
  // error.message (or the error string) as it appears in the JSON text, escapes included.
  std::string_view error_message;
};

// Reads `json` into `*out` (reset first). InvalidArgument when `json` is not one JSON object.
Status ScanStreamChunk(std::string_view json, StreamChunk* out);

}  // namespace tandem::bench
