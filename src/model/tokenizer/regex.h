// Unicode regular expressions for pre-tokenization (the Split patterns of tokenizer.json and
// tiktoken), through PCRE2 in UTF + UCP mode (\p{L}, \s etc. by Unicode properties, lookahead),
// JIT-compiled.
//
// Thread safety: a Regex is immutable after Compile; ForEachMatch may run on many threads (each
// call uses its own match data).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "tandem/status.h"

namespace tandem::tokenizer {

class Regex {
 public:
  // InvalidArgument with PCRE2's message and offset when `pattern` does not compile.
  static StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(begin, end) with byte offsets for each non-overlapping, non-empty match from
  // left to right. `text` must be valid UTF-8.
  void ForEachMatch(std::string_view text,
                    const std::function<void(size_t begin, size_t end)>& on_match) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex(std::string pattern, void* code) : pattern_(std::move(pattern)), code_(code) {}
  std::string pattern_;
  void* code_;  // pcre2_code*, kept opaque so pcre2.h stays out of this header.
};

}  // namespace tandem::tokenizer
