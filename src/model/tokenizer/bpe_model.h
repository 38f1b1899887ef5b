// The BPE model of a Hugging Face tokenizer.json: one pre-tokenized word -> token ids, exactly as
// the `tokenizers` library computes them (merge order by rank then position, its handling of
// stale queue entries, continuing_subword_prefix / end_of_word_suffix, unk_token with fuse_unk,
// byte_fallback to <0xAB> tokens, ignore_merges).
//
// Words are memoised in a bounded cache shared by all threads (64 shards of 1024 direct-mapped
// entries, one mutex per shard, about 8 MB per model), so frequent words cost a hash lookup.
// Vocabulary and merges live in open-addressing tables keyed by the token bytes and by the id
// pair. Long words of a SentencePiece-style vocabulary (no token with '▁' inside) are cut before
// each word-initial '▁' first, which changes no id and keeps whole texts out of one merge loop.
//
// Thread safety: a BpeModel is immutable after Parse except for its internal cache, which is
// synchronised; Tokenize and the lookups may run on many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem::tokenizer {

class BpeModel {
 public:
  // `spec` is the value of "model"; its type must be "BPE" (or absent, as in files from before
  // model types were tagged). `source` names the file in error messages.
  static StatusOr<std::unique_ptr<BpeModel>> Parse(const nlohmann::json& spec,
                                                   std::string_view source);
  ~BpeModel();
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of `word` (one pre-token, valid UTF-8) to `ids`. Characters that have no
  // token, no byte fallback and no unk_token are dropped, as in `tokenizers`.
  void Tokenize(std::string_view word, std::vector<int32_t>& ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token with this id; nullopt when none has it. Views stay valid while the model lives.
  std::optional<std::string_view> IdToToken(int32_t id) const;
  // One past the largest id of the vocabulary.
  int32_t id_end() const { return static_cast<int32_t>(id_spans_.size()); }

 private:
  struct Symbol;
  struct Merge;
  class WordCache;

  BpeModel();
  // Tokenize without the split at '▁': the cache, then the merges.
  void TokenizeWord(std::string_view word, std::vector<int32_t>& ids) const;
  // Splits `word` into initial symbols, merges them and appends the resulting ids.
  void MergeWord(std::string_view word, std::vector<int32_t>& ids) const;
  void MergeByScan() const;
  void MergeByQueue() const;
  // The calling thread's symbol buffer, reused across words.
  static std::vector<Symbol>& ThreadSymbols();
  int32_t CharId(std::string_view ch) const;

  // Vocabulary: token bytes in one arena, found through an open-addressing table whose slots carry
  // the token's place in the arena (one cache miss for the slot, one for the bytes).
  struct VocabSlot {
    uint32_t tag = 0;  // High half of the hash.
    int32_t id = -1;   // -1: empty slot.
    uint32_t offset = 0;
    uint32_t length = 0;
  };
  struct Span {
    uint32_t offset = 0;
    uint32_t length = UINT32_MAX;  // UINT32_MAX: no token has this id.
  };
  std::string arena_;
  std::vector<VocabSlot> vocab_slots_;
  uint64_t vocab_mask_ = 0;
  std::vector<Span> id_spans_;  // By id.

  // Merges: (left id, right id) -> (rank, merged id), open addressing on the packed pair.
  struct MergeSlot {
    uint64_t pair = ~uint64_t{0};
    uint32_t rank = 0;
    int32_t merged_id = 0;
  };
  std::vector<MergeSlot> merges_;
  uint64_t merge_mask_ = 0;
  size_t MergeSlotOf(int32_t left, int32_t right) const;
  void PrefetchMerge(int32_t left, int32_t right) const;
  const MergeSlot* FindMerge(int32_t left, int32_t right) const;

  // Ids of one-character tokens below U+0800, -1 when absent: the common initial symbols.
  std::vector<int32_t> small_char_ids_;
  // Ids of <0x00>..<0xFF>, -1 when absent; used only with byte_fallback.
  int32_t byte_ids_[256];

  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  // Long words may be cut before each '▁' that follows another character (see Tokenize).
  bool split_at_metaspace_ = false;

  std::unique_ptr<WordCache> cache_;
};

}  // namespace tandem::tokenizer
