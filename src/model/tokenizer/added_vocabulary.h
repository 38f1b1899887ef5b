// The added tokens of a Hugging Face tokenizer.json ("added_tokens"): special and user-added
// tokens that are cut out of the text before the model sees it, as `tokenizers`' AddedVocabulary
// does. Tokens with normalized=false are matched in the raw text; tokens with normalized=true are
// matched, in their normalized form, in the normalized text that remains. Among matches starting
// at the same place the longest wins (leftmost-longest); single_word, lstrip and rstrip apply as
// in `tokenizers` (lstrip/rstrip absorb neighbouring whitespace into the token).
//
// Thread safety: immutable after Parse; all const methods may run on many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tandem/status.h"

namespace tandem::tokenizer {

class Normalizer;

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// A piece of text after added tokens were cut out: [begin, end) bytes, and the token's id, or -1
// for plain text still to be tokenized.
struct TextSegment {
  size_t begin = 0;
  size_t end = 0;
  int32_t id = -1;
};

class AddedVocabulary {
 public:
  // `spec` is the "added_tokens" array (or null for none). `normalizer` (may be null) gives the
  // form normalized tokens are matched in; it must outlive nothing (used only here).
  static StatusOr<std::unique_ptr<AddedVocabulary>> Parse(const nlohmann::json& spec,
                                                          const Normalizer* normalizer,
                                                          std::string_view source);

  // Splits `text` into segments covering it, cutting out the tokens of one matching set: the
  // raw-text set (normalized=false) or the normalized-text set. Empty segments are left out.
  // `out` is cleared first.
  void Split(std::string_view text, bool normalized_set, std::vector<TextSegment>& out) const;

  // True when the set has no token, so Split would return the whole text.
  bool empty(bool normalized_set) const {
    return (normalized_set ? normalized_ : raw_).patterns.empty();
  }

  const AddedToken* FindById(int32_t id) const;
  std::optional<int32_t> FindByContent(std::string_view content) const;
  // One past the largest added id (0 when there is none).
  int32_t id_end() const { return id_end_; }

 private:
  struct Pattern {
    std::string text;  // As matched: the content, normalized for the normalized set.
    const AddedToken* token;
  };
  // Patterns bucketed by first byte, longest first, so the first hit is the longest match.
  struct MatchingSet {
    std::vector<Pattern> patterns;
    std::vector<std::vector<size_t>> by_first_byte;  // 256 buckets of indices into patterns.
    bool has_first_byte[256] = {};
  };
  void BuildSet(MatchingSet& set);

  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, int32_t> by_content_;
  MatchingSet raw_;
  MatchingSet normalized_;
  int32_t id_end_ = 0;
};

}  // namespace tandem::tokenizer
