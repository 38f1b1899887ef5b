// Normalizers of a Hugging Face tokenizer.json: text -> text before pre-tokenization, with the
// semantics of the `tokenizers` library.
//
// Supported types: NFC, NFD, NFKC, NFKD (through utf8proc), Lowercase, Strip, StripAccents,
// Prepend, Replace (String or Regex pattern), ByteLevel, Sequence. Anything else (BertNormalizer,
// Precompiled, Nmt, ...) fails to parse with "<file>: unsupported normalizer 'X'".
//
// Thread safety: a Normalizer is immutable after parsing; Normalize may run on many threads.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "tandem/status.h"

namespace tandem::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Appends the normalized form of `text` (valid UTF-8) to `out`; the result is valid UTF-8.
  virtual void Normalize(std::string_view text, std::string& out) const = 0;
};

// `spec` is the non-null value of "normalizer" (or an element of a Sequence); `source` names the
// file and `path` the JSON location for error messages.
StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const nlohmann::json& spec,
                                                      std::string_view source,
                                                      const std::string& path);

}  // namespace tandem::tokenizer
