// Pre-tokenizers of a Hugging Face tokenizer.json: they cut a normalized text into the words the
// BPE model encodes one by one, and may rewrite them (ByteLevel maps bytes to printable
// characters, Metaspace spaces to '▁'). Semantics follow the `tokenizers` library exactly,
// including its split behaviours (Isolated, Removed, MergedWithPrevious, MergedWithNext,
// Contiguous) and the `invert` flag.
//
// Supported types: Split, ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation,
// BertPreTokenizer, CharDelimiterSplit, Sequence. Anything else fails to parse with
// "<file>: unsupported pre_tokenizer 'X'".
//
// Also home of the pieces the other tokenizer.json components share: the String/Regex pattern
// (Split, Replace normalizer, Replace decoder) and Unicode character classes as Rust defines them.
//
// Thread safety: a PreTokenizer / SplitPattern is immutable after parsing; const methods may run on
// many threads at once (each call works in the buffers its caller passes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/tokenizer/regex.h"
#include "tandem/status.h"

namespace tandem::tokenizer {

// Rust's char::is_whitespace (the Unicode White_Space property).
bool IsUnicodeWhitespace(char32_t c);
// Rust's char::is_numeric (general categories Nd, Nl, No).
bool IsUnicodeNumeric(char32_t c);
// A character of the regex class \w as Rust's regex crate defines it (letters, marks, digits,
// connector punctuation).
bool IsUnicodeWordChar(char32_t c);

// GPT-2's byte-level alphabet: byte b is written as a printable character (itself for most
// printable bytes, U+0100 + n for the others). ByteLevelChar gives its UTF-8 encoding;
// ByteLevelByte inverts it, -1 for a character outside the alphabet.
std::string_view ByteLevelChar(uint8_t byte);
int ByteLevelByte(char32_t c);
// Appends ByteLevelChar of every byte of `bytes`.
void AppendByteLevel(std::string_view bytes, std::string& out);

// A pattern of tokenizer.json: {"String": "literal"} or {"Regex": "pcre-compatible"}.
class SplitPattern {
 public:
  // `where` names the JSON location for error messages ("<file>: field 'x.pattern'").
  static StatusOr<SplitPattern> Parse(const nlohmann::json& spec, std::string_view where);
  // The required field "pattern" of the component `spec` at `path`: "<source>: field
  // '<path>.pattern' is missing", or the errors of Parse.
  static StatusOr<SplitPattern> FromField(const nlohmann::json& spec, std::string_view source,
                                          const std::string& path);
  static SplitPattern Literal(std::string text);
  static StatusOr<SplitPattern> FromRegex(std::string_view pattern);

  SplitPattern(SplitPattern&&) = default;
  SplitPattern& operator=(SplitPattern&&) = default;

  // Appends the [begin, end) byte ranges of the non-overlapping, non-empty matches in `text`
  // (valid UTF-8), left to right.
  void FindMatches(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

  // `text` with every match replaced by `content`, appended to `out`.
  void ReplaceAll(std::string_view text, std::string_view content, std::string& out) const;

 private:
  SplitPattern() = default;
  std::string literal_;
  std::unique_ptr<Regex> regex_;  // Null for a literal pattern.
};

// Words during pre-tokenization: byte ranges of `text`. A range that starts at byte 0 of the
// original input (before added tokens were cut out) has at_origin set; Metaspace's
// prepend_scheme "first" reads it.
struct WordSpan {
  size_t begin = 0;
  size_t end = 0;
  bool at_origin = false;
};
struct PreTokenizedText {
  std::string text;
  std::vector<WordSpan> words;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Rewrites `io` into its words. `scratch` is working space the call may fill and swap with `io`;
  // both are reused across calls, so a steady-state call allocates nothing. Empty words are
  // dropped.
  virtual void PreTokenize(PreTokenizedText& io, PreTokenizedText& scratch) const = 0;
};

// `spec` is the non-null value of "pre_tokenizer" (or an element of a Sequence); `source` names
// the file and `path` the JSON location for error messages.
StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const nlohmann::json& spec,
                                                          std::string_view source,
                                                          const std::string& path);

}  // namespace tandem::tokenizer
