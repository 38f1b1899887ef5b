// TiktokenTokenizer: tiktoken rank files ("base64(token bytes) rank" per line), the format of
// Meta's Llama 3 tokenizer.model. Encoding is tiktoken's: split the text at special tokens,
// pre-tokenize the rest with a regex, look each piece up whole, and otherwise run rank-based byte
// BPE (repeatedly merge the adjacent pair whose concatenated bytes has the lowest rank).
//
// Added tokens come from `added_tokens_decoder` in a tokenizer_config.json beside the file (with
// its bos_token / add_bos_token / eos_token / add_eos_token). Without one that lists them, a file
// of exactly 128000 ranks gets Llama 3's 256 special tokens (128000..128255, named as Meta's
// tokenizer.py names them) and a leading <|begin_of_text|>; any other file gets none.
//
// Tokens are reported (IdToToken/TokenToId) in the byte-level alphabet of GPT-2 that Hugging Face
// tokenizer.json files use ("Ġthe"), so ids and strings agree with a tokenizer.json made from the
// same ranks.
//
// Speed: ranks sit in an open-addressing table over one byte arena (plus direct tables for one-
// and two-byte tokens), and each thread keeps a small cache (about 300 KB, allocated on its first
// Encode) of how recent non-token pieces split.
//
// Thread safety: immutable after Load/Create; Encode/Decode may run on many threads at once (the
// piece cache is per thread, so they take no lock).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/tokenizer/regex.h"
#include "model/tokenizer/tokenizer.h"
#include "tandem/status.h"

namespace tandem::tokenizer {

// Llama 3's pre-tokenization regex (also OpenAI's cl100k_base pattern).
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A token outside the rank file, matched in text before pre-tokenization.
struct TiktokenAddedToken {
  int32_t id = 0;
  std::string content;
  // Special tokens are dropped by Decode(skip_special_tokens=true); others are always decoded.
  bool special = true;
};

struct TiktokenOptions {
  // Pre-tokenization regex (PCRE2 syntax).
  std::string pattern = std::string(kLlama3Pattern);
  // Added tokens; their ids must not be ranks of the file.
  std::vector<TiktokenAddedToken> added_tokens;
  // Prepended / appended by Encode(add_special_tokens=true) when set; each must be an added token.
  std::optional<int32_t> bos_id;
  std::optional<int32_t> eos_id;
};

// The options Load gives a 128000-rank file: Llama 3 specials, BOS <|begin_of_text|>.
TiktokenOptions Llama3TiktokenOptions();

class TiktokenTokenizer final : public Tokenizer {
 public:
  // Reads `rank_file` and the tokenizer_config.json beside it, if any (see the file comment).
  // Errors name the file and, for a malformed line, its number.
  static StatusOr<std::unique_ptr<TiktokenTokenizer>> Load(const std::filesystem::path& rank_file);

  // Builds from the contents of a rank file. `source` names it in errors. InvalidArgument for a
  // malformed line, a repeated rank or token, a missing single-byte token, an added token whose
  // id collides with a rank, or a pattern that does not compile.
  static StatusOr<std::unique_ptr<TiktokenTokenizer>> Create(std::string_view rank_file_contents,
                                                             TiktokenOptions options,
                                                             std::string_view source);

  // True when `head` (the first bytes of a file) reads as "base64 rank" lines.
  static bool LooksLikeRankFile(std::string_view head);

  ~TiktokenTokenizer() override;
  TiktokenTokenizer(const TiktokenTokenizer&) = delete;
  TiktokenTokenizer& operator=(const TiktokenTokenizer&) = delete;

  StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                        bool add_special_tokens) const override;
  StatusOr<std::string> Decode(std::span<const int32_t> ids,
                               bool skip_special_tokens) const override;
  int vocab_size() const override { return vocab_size_; }
  std::optional<std::string> IdToToken(int32_t id) const override;
  std::optional<int32_t> TokenToId(std::string_view token) const override;
  bool IsSpecial(int32_t id) const override;

  // Number of ranks in the file (ids below this that are not gaps are BPE tokens).
  int num_ranks() const { return static_cast<int>(rank_count_); }

 private:
  class RankTable;
  struct PieceCache;
  struct Added {
    std::string content;
    bool special = true;
  };

  TiktokenTokenizer();

  // Appends the ids of `text` (valid UTF-8, no added tokens matched).
  void EncodeOrdinary(std::string_view text, std::vector<int32_t>& ids) const;
  // Appends the ids of one pre-token: itself when it is a token, else its BPE split.
  void EncodePiece(std::string_view piece, std::vector<int32_t>& ids) const;
  // tiktoken's byte-pair merge of `piece`.
  void BytePairMerge(std::string_view piece, std::vector<int32_t>& ids) const;
  // Finds the leftmost-longest added token in text[from:]; returns false when there is none.
  bool FindAdded(std::string_view text, size_t from, size_t* begin, size_t* end, int32_t* id) const;

  std::unique_ptr<RankTable> ranks_;
  size_t rank_count_ = 0;
  std::unique_ptr<Regex> regex_;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>()(s);
    }
  };

  std::unordered_map<int32_t, Added> added_by_id_;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> added_by_content_;
  std::vector<size_t> added_lengths_;  // distinct content lengths, longest first
  bool added_first_byte_[256] = {};
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
  int vocab_size_ = 0;
  const uint64_t serial_;  // unique per instance; keys the per-thread piece cache
};

}  // namespace tandem::tokenizer
