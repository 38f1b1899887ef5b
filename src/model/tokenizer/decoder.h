// Decoders of a Hugging Face tokenizer.json: token strings -> text, with the semantics of
// `tokenizers`' decode_chain (each decoder maps the list of token strings to a new list; the
// result is their concatenation).
//
// Supported types: ByteLevel (bytes spelled by the tokens; invalid UTF-8 becomes U+FFFD),
// Metaspace, ByteFallback (a run of <0xAB> tokens that is not valid UTF-8 becomes one U+FFFD per
// byte), Fuse, Strip, Replace, BPEDecoder, Sequence. Anything else fails to parse with
// "<file>: unsupported decoder 'X'".
//
// Thread safety: immutable after parsing; DecodeChain may run on many threads.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem::tokenizer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites `tokens` in place, as decode_chain does.
  virtual void DecodeChain(std::vector<std::string>& tokens) const = 0;
  // True for a lone ByteLevel decoder: its output is just the bytes the tokens spell, which lets
  // the caller skip building the token list.
  virtual bool IsByteLevel() const { return false; }
};

// Appends the bytes a byte-level token spells: each character mapped back through GPT-2's
// alphabet, or the token's own bytes when one of its characters is outside it (as `tokenizers`
// does for added tokens such as "<|endoftext|>" that are not byte-level encoded).
void AppendByteLevelBytes(std::string_view token, std::string& out);

// `spec` is the non-null value of "decoder" (or an element of a Sequence).
StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const nlohmann::json& spec, std::string_view source,
                                                const std::string& path);

}  // namespace tandem::tokenizer
