// TextStream: the generated text of one request, token by token, as a client may see it:
// incrementally detokenized (whole UTF-8 characters only), cut before the first stop string,
// and with any tail that could still become a stop string held back until it cannot.
//
// Thread safety: not thread-safe (one per request, used on that request's strand).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/tokenizer/incremental_detokenizer.h"
#include "model/tokenizer/tokenizer.h"

namespace tandem::frontend {

class TextStream {
 public:
  // `stop`: stop strings (empty ones are ignored). The tokenizer must outlive the stream.
  TextStream(const tokenizer::Tokenizer& tokenizer, bool skip_special_tokens,
             std::span<const int32_t> prompt_ids, std::vector<std::string> stop);

  // Adds one generated token; returns the text that is now final (possibly empty). After a stop
  // string matched, stopped() is true and further tokens add nothing.
  std::string Push(int32_t id);

  // The end of generation: returns whatever was held back (nothing after a stop).
  std::string Finish();

  bool stopped() const { return stopped_; }
  // Bytes of text returned so far.
  size_t emitted_bytes() const { return emitted_bytes_; }

 private:
  // Moves the final part of pending_ out, keeping back a tail that is a prefix of a stop string.
  std::string TakeFinal();

  tokenizer::IncrementalDetokenizer detokenizer_;
  std::vector<std::string> stop_;
  std::string pending_;  // Detokenized but not yet returned.
  bool stopped_ = false;
  size_t emitted_bytes_ = 0;
};

}  // namespace tandem::frontend
