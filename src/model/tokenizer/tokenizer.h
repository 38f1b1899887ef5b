// Text <-> token ids, with exactly the ids a model was trained with. Three formats stand behind
// one interface: Hugging Face tokenizer.json (BPE, byte-level or SentencePiece-style), tiktoken
// rank files (Meta's Llama 3 tokenizer.model) and SentencePiece .model files.
//
// Thread safety: a Tokenizer is immutable after loading; Encode/Decode may run on many threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // `text` must be valid UTF-8 (InvalidArgument otherwise, naming the byte offset). Special and
  // added tokens written in the text are matched as such. add_special_tokens applies the
  // format's post-processing (e.g. a leading BOS).
  virtual StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                                bool add_special_tokens) const = 0;

  // Ids outside the vocabulary are InvalidArgument. Invalid UTF-8 the tokens spell (a byte-level
  // token cut mid-character) decodes to U+FFFD, as Hugging Face does.
  virtual StatusOr<std::string> Decode(std::span<const int32_t> ids,
                                       bool skip_special_tokens) const = 0;

  // Vocabulary size including added/special tokens (max id + 1).
  virtual int vocab_size() const = 0;
  // The token's string as stored in the vocabulary (e.g. "Ġthe", "▁the", "<|eot_id|>").
  virtual std::optional<std::string> IdToToken(int32_t id) const = 0;
  virtual std::optional<int32_t> TokenToId(std::string_view token) const = 0;
  // Special (control) tokens: skipped by skip_special_tokens.
  virtual bool IsSpecial(int32_t id) const = 0;
};

// Loads PATH: a model directory (tokenizer.json preferred, else tokenizer.model as tiktoken or
// SentencePiece), or one of those files. Errors name the file and, for tokenizer.json, the
// component that is unknown or malformed.
StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::filesystem::path& path);

}  // namespace tandem::tokenizer
