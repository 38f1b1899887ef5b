#include "model/tokenizer/bpe_model.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/status_macros.h"
#include "model/tokenizer/json_spec.h"
#include "model/tokenizer/utf8.h"

namespace tandem::tokenizer {
namespace {

using Json = nlohmann::json;

// The word cache holds words of up to kMaxCachedWordBytes bytes that encode to at most
// kMaxCachedIds ids, inline in fixed-size entries: no allocation on a hit or an insert. Longer
// words are rare and go through the merge loop each time.
constexpr size_t kMaxCachedWordBytes = 46;
constexpr size_t kMaxCachedIds = 16;
// Words of up to this many initial symbols merge by scanning a rank array; longer ones through a
// priority queue (same result, better asymptotics).
constexpr size_t kMaxLinearSymbols = 48;
// SentencePiece's word-boundary mark, U+2581.
constexpr std::string_view kMetaspace = "\xE2\x96\x81";
// Ids above this are taken for a corrupt file rather than a sparse vocabulary.
constexpr int64_t kMaxTokenId = (int64_t{1} << 28) - 1;
// Ids may leave gaps, but the id table (8 bytes per id) may not outgrow the vocabulary by more.
constexpr int64_t kMaxIdGaps = int64_t{1} << 20;

uint64_t Mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

// The project's one byte hash (xxh3, as the block hash uses); table keys only.
uint64_t HashBytes(std::string_view s) { return XXH3_64bits(s.data(), s.size()); }

uint64_t PackPair(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// A power of two with a load factor of at most 2/3 for `count` keys: small enough to stay in
// cache, sparse enough for short linear probes.
size_t TableSizeFor(size_t count) {
  size_t size = 16;
  while (size * 2 < count * 3) size <<= 1;
  return size;
}

size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  return 2;
}

}  // namespace

// The per-word memo, shared by all threads: shards of direct-mapped entries, each shard behind its
// own mutex. A new word overwrites whatever shared its slot (bounded memory, no eviction
// bookkeeping).
class BpeModel::WordCache {
 public:
  bool Find(std::string_view word, uint64_t hash, std::vector<int32_t>& ids) {
    Shard& shard = shards_[hash % kShards];
    const Entry& entry = shard.entries[(hash >> 32) % kEntriesPerShard];
    std::lock_guard<std::mutex> lock(shard.mu);
    if (entry.hash != hash || entry.word_len != word.size() ||
        std::memcmp(entry.word, word.data(), word.size()) != 0) {
      return false;
    }
    ids.insert(ids.end(), entry.ids, entry.ids + entry.id_count);
    return true;
  }

  void Insert(std::string_view word, uint64_t hash, const int32_t* ids, size_t count) {
    if (word.size() > kMaxCachedWordBytes || count > kMaxCachedIds) return;
    Shard& shard = shards_[hash % kShards];
    Entry& entry = shard.entries[(hash >> 32) % kEntriesPerShard];
    std::lock_guard<std::mutex> lock(shard.mu);
    entry.hash = hash;
    entry.word_len = static_cast<uint8_t>(word.size());
    entry.id_count = static_cast<uint8_t>(count);
    std::memcpy(entry.word, word.data(), word.size());
    std::memcpy(entry.ids, ids, count * sizeof(int32_t));
  }

 private:
  struct Entry {
    uint64_t hash = 0;
    uint8_t word_len = 0xFF;  // Matches no word: an empty slot.
    uint8_t id_count = 0;
    char word[kMaxCachedWordBytes];
    int32_t ids[kMaxCachedIds];
  };
  static constexpr size_t kShards = 64;
  static constexpr size_t kEntriesPerShard = 1024;
  struct Shard {
    std::mutex mu;
    std::array<Entry, kEntriesPerShard> entries;
  };
  std::array<Shard, kShards> shards_;
};

struct BpeModel::Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  uint32_t len;  // Bytes of the word it covers; 0 once merged into its left neighbour.
};

struct BpeModel::Merge {
  uint32_t rank;
  int32_t pos;
  int32_t new_id;
};

std::vector<BpeModel::Symbol>& BpeModel::ThreadSymbols() {
  thread_local std::vector<Symbol> symbols;
  return symbols;
}

BpeModel::BpeModel() : cache_(std::make_unique<WordCache>()) { std::fill_n(byte_ids_, 256, -1); }
BpeModel::~BpeModel() = default;

StatusOr<std::unique_ptr<BpeModel>> BpeModel::Parse(const nlohmann::json& spec,
                                                    std::string_view source) {
  if (!spec.is_object()) return FieldError(source, "model", "must be an object");
  if (const Json* type = FindField(spec, "type"); type != nullptr) {
    if (!type->is_string()) return FieldError(source, "model.type", "must be a string");
    if (type->get<std::string>() != "BPE") {
      return InvalidArgumentError(std::string(source) + ": unsupported model type '" +
                                  type->get<std::string>() + "'");
    }
  }
  if (const Json* dropout = FindField(spec, "dropout"); dropout != nullptr) {
    if (!dropout->is_number() || dropout->get<double>() != 0.0) {
      return FieldError(source, "model.dropout",
                        "must be null or 0 (BPE dropout is not supported)");
    }
  }

  std::unique_ptr<BpeModel> model(new BpeModel());
  TANDEM_RETURN_IF_ERROR(ReadBool(spec, "fuse_unk", source, "model", &model->fuse_unk_));
  TANDEM_RETURN_IF_ERROR(ReadBool(spec, "byte_fallback", source, "model", &model->byte_fallback_));
  TANDEM_RETURN_IF_ERROR(ReadBool(spec, "ignore_merges", source, "model", &model->ignore_merges_));
  TANDEM_RETURN_IF_ERROR(ReadOptionalString(spec, "continuing_subword_prefix", source, "model",
                                            &model->continuing_subword_prefix_));
  TANDEM_RETURN_IF_ERROR(
      ReadOptionalString(spec, "end_of_word_suffix", source, "model", &model->end_of_word_suffix_));
  std::string unk_token;
  TANDEM_RETURN_IF_ERROR(ReadOptionalString(spec, "unk_token", source, "model", &unk_token));

  // Vocabulary.
  const Json* vocab = FindField(spec, "vocab");
  if (vocab == nullptr) return FieldError(source, "model.vocab", "is missing");
  if (!vocab->is_object()) return FieldError(source, "model.vocab", "must be an object");
  std::vector<std::pair<Span, int32_t>> entries;  // (bytes in the arena, id)
  entries.reserve(vocab->size());
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > kMaxTokenId) {
      return FieldError(source, "model.vocab", "maps '" + token + "' to an invalid id");
    }
    if (model->arena_.size() + token.size() >= UINT32_MAX) {
      return FieldError(source, "model.vocab", "is too large");
    }
    max_id = std::max(max_id, id.get<int64_t>());
    entries.push_back(
        {Span{static_cast<uint32_t>(model->arena_.size()), static_cast<uint32_t>(token.size())},
         static_cast<int32_t>(id.get<int64_t>())});
    model->arena_ += token;
  }
  if (max_id >= static_cast<int64_t>(entries.size()) * 4 + kMaxIdGaps) {
    return FieldError(source, "model.vocab",
                      "has ids up to " + std::to_string(max_id) + " for only " +
                          std::to_string(entries.size()) + " tokens");
  }
  const size_t table_size = TableSizeFor(entries.size());
  model->vocab_slots_.assign(table_size, VocabSlot{});
  model->vocab_mask_ = table_size - 1;
  model->id_spans_.assign(static_cast<size_t>(max_id + 1), Span{});
  for (const auto& [span, id] : entries) {
    const uint64_t hash =
        HashBytes(std::string_view(model->arena_).substr(span.offset, span.length));
    size_t slot = hash & model->vocab_mask_;
    while (model->vocab_slots_[slot].id >= 0) slot = (slot + 1) & model->vocab_mask_;
    model->vocab_slots_[slot] = {static_cast<uint32_t>(hash >> 32), id, span.offset, span.length};
    // Two strings with one id: the first spells it, as the reverse map of `tokenizers` keeps one.
    if (model->id_spans_[id].length == UINT32_MAX) model->id_spans_[id] = span;
  }

  // Merges, as "a b" strings or ["a", "b"] pairs. A pair listed twice keeps its last rank, as
  // the map `tokenizers` builds does.
  const Json* merges = FindField(spec, "merges");
  if (merges == nullptr) return FieldError(source, "model.merges", "is missing");
  if (!merges->is_array()) return FieldError(source, "model.merges", "must be an array");
  const size_t merge_table_size = TableSizeFor(merges->size());
  model->merges_.assign(merge_table_size, MergeSlot{});
  model->merge_mask_ = merge_table_size - 1;
  const std::string& prefix = model->continuing_subword_prefix_;
  std::string merged;
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const Json& entry = (*merges)[rank];
    const std::string field = "model.merges[" + std::to_string(rank) + "]";
    std::string left, right;
    if (entry.is_string()) {
      const std::string& text = entry.get_ref<const std::string&>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == text.size()) {
        return FieldError(source, field, "must be two tokens separated by a space");
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      left = entry[0].get<std::string>();
      right = entry[1].get<std::string>();
    } else {
      return FieldError(source, field, "must be a string \"a b\" or a pair [\"a\", \"b\"]");
    }
    const std::optional<int32_t> left_id = model->TokenToId(left);
    const std::optional<int32_t> right_id = model->TokenToId(right);
    merged = left;
    merged.append(!prefix.empty() && right.size() >= prefix.size()
                      ? std::string_view(right).substr(prefix.size())
                      : std::string_view(right));
    const std::optional<int32_t> merged_id = model->TokenToId(merged);
    if (!left_id || !right_id || !merged_id) {
      const std::string& missing = !left_id ? left : !right_id ? right : merged;
      return FieldError(source, field, "uses '" + missing + "', which is not in model.vocab");
    }
    const uint64_t pair = PackPair(*left_id, *right_id);
    size_t slot = Mix(pair) & model->merge_mask_;
    while (model->merges_[slot].pair != ~uint64_t{0} && model->merges_[slot].pair != pair) {
      slot = (slot + 1) & model->merge_mask_;
    }
    model->merges_[slot] = {pair, static_cast<uint32_t>(rank), *merged_id};
  }

  if (!unk_token.empty()) {
    // A missing unk token makes unknown characters vanish instead of failing every encode.
    model->unk_id_ = model->TokenToId(unk_token);
  }
  if (model->byte_fallback_) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const char name[7] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>', '\0'};
      model->byte_ids_[b] = model->TokenToId(name).value_or(-1);
    }
  }
  // Splitting words before '▁' is exact when no token has '▁' after another character (see
  // Tokenize); with ignore_merges the whole word must be looked up first, and affixes would
  // change with the cut.
  bool metaspace_inside = false;
  for (const auto& [span, id] : entries) {
    std::string_view token = std::string_view(model->arena_).substr(span.offset, span.length);
    while (token.starts_with(kMetaspace)) token.remove_prefix(kMetaspace.size());
    if (token.find(kMetaspace) != std::string_view::npos) {
      metaspace_inside = true;
      break;
    }
  }
  model->split_at_metaspace_ =
      !metaspace_inside && !model->ignore_merges_ && model->TokenToId(kMetaspace).has_value() &&
      model->continuing_subword_prefix_.empty() && model->end_of_word_suffix_.empty();

  model->small_char_ids_.assign(0x800, -1);
  std::string ch;
  for (char32_t c = 0; c < 0x800; ++c) {
    ch.clear();
    AppendUtf8(c, ch);
    model->small_char_ids_[c] = model->TokenToId(ch).value_or(-1);
  }
  return model;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  const uint64_t hash = HashBytes(token);
  const auto tag = static_cast<uint32_t>(hash >> 32);
  size_t slot = hash & vocab_mask_;
  while (true) {
    const VocabSlot& entry = vocab_slots_[slot];
    if (entry.id < 0) return std::nullopt;
    if (entry.tag == tag && entry.length == token.size() &&
        std::memcmp(arena_.data() + entry.offset, token.data(), token.size()) == 0) {
      return entry.id;
    }
    slot = (slot + 1) & vocab_mask_;
  }
}

std::optional<std::string_view> BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_spans_.size()) return std::nullopt;
  const Span span = id_spans_[id];
  if (span.length == UINT32_MAX) return std::nullopt;
  return std::string_view(arena_).substr(span.offset, span.length);
}

size_t BpeModel::MergeSlotOf(int32_t left, int32_t right) const {
  return Mix(PackPair(left, right)) & merge_mask_;
}

void BpeModel::PrefetchMerge(int32_t left, int32_t right) const {
  __builtin_prefetch(&merges_[MergeSlotOf(left, right)]);
}

const BpeModel::MergeSlot* BpeModel::FindMerge(int32_t left, int32_t right) const {
  const uint64_t pair = PackPair(left, right);
  size_t slot = MergeSlotOf(left, right);
  while (true) {
    const MergeSlot& entry = merges_[slot];
    if (entry.pair == pair) return &entry;
    if (entry.pair == ~uint64_t{0}) return nullptr;
    slot = (slot + 1) & merge_mask_;
  }
}

int32_t BpeModel::CharId(std::string_view ch) const {
  const auto lead = static_cast<unsigned char>(ch[0]);
  if (lead < 0x80) return small_char_ids_[lead];
  if (ch.size() == 2) {
    return small_char_ids_[((lead & 0x1F) << 6) | (static_cast<unsigned char>(ch[1]) & 0x3F)];
  }
  return TokenToId(ch).value_or(-1);
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const std::optional<int32_t> id = TokenToId(word)) {
      ids.push_back(*id);
      return;
    }
  }
  if (split_at_metaspace_ && word.size() > kMaxCachedWordBytes) {
    // No token has '▁' after another character, so no merge crosses the place before a '▁'
    // that follows another character: the parts merge independently, to the same ids, and each
    // is short enough to be cached. (A SentencePiece-style vocabulary without a pre-tokenizer
    // would otherwise merge whole texts as one word.)
    size_t begin = 0;
    size_t pos = word.find(kMetaspace, 1);
    while (pos != std::string_view::npos) {
      if (word.substr(pos - kMetaspace.size(), kMetaspace.size()) != kMetaspace) {
        TokenizeWord(word.substr(begin, pos - begin), ids);
        begin = pos;
      }
      pos = word.find(kMetaspace, pos + kMetaspace.size());
    }
    TokenizeWord(word.substr(begin), ids);
    return;
  }
  TokenizeWord(word, ids);
}

void BpeModel::TokenizeWord(std::string_view word, std::vector<int32_t>& ids) const {
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  uint64_t hash = 0;
  if (cacheable) {
    hash = HashBytes(word);
    if (cache_->Find(word, hash, ids)) return;
  }
  const size_t first = ids.size();
  MergeWord(word, ids);
  if (cacheable) cache_->Insert(word, hash, ids.data() + first, ids.size() - first);
}

void BpeModel::MergeWord(std::string_view word, std::vector<int32_t>& ids) const {
  std::vector<Symbol>& symbols = ThreadSymbols();
  thread_local std::string affixed;
  symbols.clear();
  auto add = [&symbols](int32_t id, uint32_t len) {
    const auto index = static_cast<int32_t>(symbols.size());
    if (index > 0) symbols.back().next = index;
    symbols.push_back({id, index - 1, -1, len});
  };

  // Initial symbols: one per character, with unknown characters going to byte fallback or unk.
  bool has_unk = false;
  int32_t unk_id = 0;
  uint32_t unk_len = 0;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t begin = pos;
    pos = std::min(word.size(), pos + Utf8Length(static_cast<unsigned char>(word[pos])));
    const std::string_view ch = word.substr(begin, pos - begin);
    const bool is_first = begin == 0, is_last = pos == word.size();
    const bool with_prefix = !is_first && !continuing_subword_prefix_.empty();
    const bool with_suffix = is_last && !end_of_word_suffix_.empty();
    std::string_view key = ch;
    int32_t id;
    if (with_prefix || with_suffix) {
      affixed.clear();
      if (with_prefix) affixed += continuing_subword_prefix_;
      affixed += ch;
      if (with_suffix) affixed += end_of_word_suffix_;
      key = affixed;
      id = TokenToId(key).value_or(-1);
    } else {
      id = CharId(ch);
    }
    const auto byte_len = static_cast<uint32_t>(ch.size());
    if (id >= 0) {
      if (has_unk) {
        add(unk_id, unk_len);
        has_unk = false;
      }
      add(id, byte_len);
      continue;
    }
    if (byte_fallback_) {
      // Every byte of the symbol must have its <0xAB> token, else it is unknown. (A pending unk
      // stays pending across byte tokens, as in `tokenizers`.)
      bool all = true;
      for (const char b : key) all = all && byte_ids_[static_cast<unsigned char>(b)] >= 0;
      if (all) {
        for (const char b : key) add(byte_ids_[static_cast<unsigned char>(b)], 1);
        continue;
      }
    }
    if (unk_id_.has_value()) {
      if (has_unk && fuse_unk_) {
        unk_len += byte_len;
      } else {
        if (has_unk) add(unk_id, unk_len);
        has_unk = true;
        unk_id = *unk_id_;
        unk_len = byte_len;
      }
    }
  }
  if (has_unk) add(unk_id, unk_len);

  if (symbols.size() <= kMaxLinearSymbols) {
    MergeByScan();
  } else {
    MergeByQueue();
  }
  for (const Symbol& symbol : symbols) {
    if (symbol.len != 0) ids.push_back(symbol.id);
  }
}

// Both merge loops apply the lowest-ranked merge of an adjacent pair first, the leftmost on ties,
// as the priority queue of `tokenizers` does. (Its queue may hold entries made stale by earlier
// merges; it re-checks them by merged id, and such a check can never pass for a stale entry: the
// symbols around a position only grow. So a stale-free ordering gives the same result.)

// Short words: a rank per left symbol, scanned for the minimum after each merge.
void BpeModel::MergeByScan() const {
  std::vector<Symbol>& symbols = ThreadSymbols();
  const size_t n = symbols.size();
  uint32_t ranks[kMaxLinearSymbols];
  int32_t merged[kMaxLinearSymbols];
  auto update = [&](int32_t i) {
    ranks[i] = UINT32_MAX;
    const int32_t next = symbols[i].next;
    if (next < 0) return;
    if (const MergeSlot* m = FindMerge(symbols[i].id, symbols[next].id)) {
      ranks[i] = m->rank;
      merged[i] = m->merged_id;
    }
  };
  // The lookups miss the cache: issue them all before using any.
  for (size_t i = 0; i + 1 < n; ++i) PrefetchMerge(symbols[i].id, symbols[i + 1].id);
  for (size_t i = 0; i < n; ++i) update(static_cast<int32_t>(i));
  while (true) {
    int32_t best = -1;
    uint32_t best_rank = UINT32_MAX;
    for (size_t i = 0; i + 1 < n; ++i) {
      if (ranks[i] < best_rank) {
        best_rank = ranks[i];
        best = static_cast<int32_t>(i);
      }
    }
    if (best < 0) break;
    Symbol& current = symbols[best];
    const int32_t right = current.next;
    current.id = merged[best];
    current.len += symbols[right].len;
    current.next = symbols[right].next;
    symbols[right].len = 0;
    ranks[right] = UINT32_MAX;
    if (current.next >= 0) {
      symbols[current.next].prev = best;
      PrefetchMerge(current.id, symbols[current.next].id);
    }
    if (current.prev >= 0) PrefetchMerge(symbols[current.prev].id, current.id);
    update(best);
    if (current.prev >= 0) update(current.prev);
  }
}

// Long words: the priority queue of `tokenizers`, ordered by (rank, position).
void BpeModel::MergeByQueue() const {
  std::vector<Symbol>& symbols = ThreadSymbols();
  thread_local std::vector<Merge> queue;
  auto later = [](const Merge& a, const Merge& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  queue.clear();
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeSlot* m = FindMerge(symbols[i].id, symbols[i + 1].id)) {
      queue.push_back({m->rank, static_cast<int32_t>(i), m->merged_id});
    }
  }
  std::make_heap(queue.begin(), queue.end(), later);
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), later);
    const Merge top = queue.back();
    queue.pop_back();
    Symbol& current = symbols[top.pos];
    if (current.len == 0 || current.next == -1) continue;
    const int32_t next_pos = current.next;
    const Symbol right = symbols[next_pos];
    const MergeSlot* m = FindMerge(current.id, right.id);
    if (m == nullptr || m->merged_id != top.new_id) continue;

    current.id = top.new_id;
    current.len += right.len;
    current.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;

    if (current.prev >= 0) {
      if (const MergeSlot* left = FindMerge(symbols[current.prev].id, current.id)) {
        queue.push_back({left->rank, current.prev, left->merged_id});
        std::push_heap(queue.begin(), queue.end(), later);
      }
    }
    if (current.next >= 0) {
      if (const MergeSlot* next = FindMerge(current.id, symbols[current.next].id)) {
        queue.push_back({next->rank, top.pos, next->merged_id});
        std::push_heap(queue.begin(), queue.end(), later);
      }
    }
  }
}

}  // namespace tandem::tokenizer
