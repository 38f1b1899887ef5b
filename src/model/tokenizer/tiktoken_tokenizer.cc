#include "model/tokenizer/tiktoken_tokenizer.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstring>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <queue>
#include <system_error>
#include <utility>

#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/tokenizer/utf8.h"

namespace tandem::tokenizer {
namespace {

constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();
// Ranks above this are taken for a damaged file rather than allocated for.
constexpr int64_t kMaxRank = 16 * 1024 * 1024;
// Pieces up to this many bytes merge with tiktoken's quadratic scan, which is fastest for the
// short pieces that make up nearly all text; longer ones (runs of spaces or digits-free symbols)
// use a heap so that a pathological input stays O(n log n).
constexpr size_t kShortPiece = 128;
constexpr size_t kLlama3Ranks = 128000;

// The project's one byte hash (xxh3, as the block hash uses); table keys only.
uint64_t HashBytes(const char* p, size_t n) { return XXH3_64bits(p, n); }

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with optional '=' padding; nullopt when malformed.
std::optional<std::string> DecodeBase64(std::string_view in) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = Base64Value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest for U+0100 onwards.
struct ByteAlphabet {
  std::array<char32_t, 256> byte_to_char{};
  std::unordered_map<char32_t, uint8_t> char_to_byte;
  ByteAlphabet() {
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      byte_to_char[b] = printable ? static_cast<char32_t>(b) : next++;
      char_to_byte[byte_to_char[b]] = static_cast<uint8_t>(b);
    }
  }
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet* alphabet = new ByteAlphabet();
  return *alphabet;
}

struct RankLine {
  std::string bytes;
  int32_t rank;
};

StatusOr<std::vector<RankLine>> ParseRankFile(std::string_view contents, std::string_view source) {
  std::vector<RankLine> lines;
  size_t pos = 0;
  int line_no = 0;
  while (pos < contents.size()) {
    size_t end = contents.find('\n', pos);
    if (end == std::string_view::npos) end = contents.size();
    std::string_view line = contents.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    auto bad = [&](std::string_view why) {
      return InvalidArgumentError(std::string(source) + ": line " + std::to_string(line_no) + ": " +
                                  std::string(why));
    };
    if (space == std::string_view::npos) return bad("expected 'base64 rank'");
    auto bytes = DecodeBase64(line.substr(0, space));
    if (!bytes || bytes->empty()) return bad("token is not base64");
    const std::string_view rank_text = line.substr(space + 1);
    int64_t rank = -1;
    auto [ptr, ec] = std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
    if (ec != std::errc() || ptr != rank_text.data() + rank_text.size() || rank < 0 ||
        rank > kMaxRank) {
      return bad("rank is not an integer in [0, " + std::to_string(kMaxRank) + "]");
    }
    lines.push_back({std::move(*bytes), static_cast<int32_t>(rank)});
  }
  if (lines.empty()) return InvalidArgumentError(std::string(source) + ": no ranks");
  return lines;
}

size_t CountRankLines(std::string_view contents) {
  size_t count = 0;
  size_t pos = 0;
  while (pos < contents.size()) {
    size_t end = contents.find('\n', pos);
    if (end == std::string_view::npos) end = contents.size();
    if (end > pos && !(end == pos + 1 && contents[pos] == '\r')) ++count;
    pos = end + 1;
  }
  return count;
}

// tokenizer_config.json's "bos_token": a string or {"content": ...}.
std::optional<std::string> TokenContent(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  return std::nullopt;
}

// Applies added_tokens_decoder / bos / eos of a tokenizer_config.json; leaves `options` alone
// when it lists no added tokens.
Status ApplyTokenizerConfig(const std::filesystem::path& path, TiktokenOptions& options) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return InvalidArgumentError(path.string() + ": not a JSON object");
  }
  auto decoder = config.find("added_tokens_decoder");
  if (decoder == config.end() || !decoder->is_object() || decoder->empty()) return OkStatus();
  std::vector<TiktokenAddedToken> added;
  for (auto it = decoder->begin(); it != decoder->end(); ++it) {
    int64_t id = -1;
    const std::string& key = it.key();
    auto [ptr, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || ptr != key.data() + key.size() || id < 0 || id > kMaxRank) {
      return InvalidArgumentError(path.string() + ": added_tokens_decoder key '" + key +
                                  "' is not a token id");
    }
    const nlohmann::json& entry = it.value();
    auto content = entry.is_object() ? entry.find("content") : entry.end();
    if (!entry.is_object() || content == entry.end() || !content->is_string() ||
        content->get<std::string>().empty()) {
      return InvalidArgumentError(path.string() + ": added_tokens_decoder[" + key +
                                  "].content must be a non-empty string");
    }
    auto special = entry.find("special");
    added.push_back({static_cast<int32_t>(id), content->get<std::string>(),
                     special == entry.end() || !special->is_boolean() || special->get<bool>()});
  }
  auto id_of = [&](const std::string& content) -> std::optional<int32_t> {
    for (const auto& a : added) {
      if (a.content == content) return a.id;
    }
    return std::nullopt;
  };
  auto flag = [&](const char* key, bool fallback) {
    auto it = config.find(key);
    return it != config.end() && it->is_boolean() ? it->get<bool>() : fallback;
  };
  options.bos_id.reset();
  options.eos_id.reset();
  if (auto bos = TokenContent(config, "bos_token"); bos && flag("add_bos_token", true)) {
    options.bos_id = id_of(*bos);
  }
  if (auto eos = TokenContent(config, "eos_token"); eos && flag("add_eos_token", false)) {
    options.eos_id = id_of(*eos);
  }
  options.added_tokens = std::move(added);
  return OkStatus();
}

}  // namespace

// Open-addressing map from token bytes to rank, over one arena of all token bytes. A slot holds
// the token's length and arena offset, so a lookup costs one hash, one slot read and, nearly
// always, one memcmp. Tokens of one and two bytes (every BPE start, most first merges) are also
// in direct tables.
class TiktokenTokenizer::RankTable {
 public:
  explicit RankTable(const std::vector<RankLine>& lines) {
    int32_t max_rank = 0;
    size_t total = 0;
    for (const auto& l : lines) {
      max_rank = std::max(max_rank, l.rank);
      total += l.bytes.size();
    }
    arena_.reserve(total);
    offset_.assign(static_cast<size_t>(max_rank) + 1, 0);
    length_.assign(static_cast<size_t>(max_rank) + 1, kGap);
    size_t capacity = 16;
    while (capacity < lines.size() * 2) capacity <<= 1;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    byte_rank_.fill(kNoRank);
    pair_rank_.assign(1 << 16, kNoRank);
  }

  // False when the rank or the bytes are already present.
  bool Insert(const std::string& bytes, int32_t rank) {
    if (length_[rank] != kGap || Find(bytes) >= 0) return false;
    offset_[rank] = static_cast<uint32_t>(arena_.size());
    length_[rank] = static_cast<uint32_t>(bytes.size());
    arena_ += bytes;
    const uint64_t h = HashBytes(bytes.data(), bytes.size());
    size_t i = h & mask_;
    while (slots_[i].rank >= 0) i = (i + 1) & mask_;
    slots_[i] = Slot{static_cast<uint32_t>(h >> 32), rank, offset_[rank], length_[rank]};
    if (bytes.size() == 1) byte_rank_[static_cast<unsigned char>(bytes[0])] = rank;
    if (bytes.size() == 2) pair_rank_[PairIndex(bytes.data())] = rank;
    return true;
  }

  int32_t Find(std::string_view bytes) const {
    return Find(bytes, HashBytes(bytes.data(), bytes.size()));
  }
  // `h` must be HashBytes(bytes).
  int32_t Find(std::string_view bytes, uint64_t h) const {
    const auto tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.rank < 0) return -1;
      if (s.tag == tag && s.length == bytes.size() &&
          std::memcmp(arena_.data() + s.offset, bytes.data(), bytes.size()) == 0) {
        return s.rank;
      }
    }
  }

  uint32_t FindRank(std::string_view bytes) const {
    if (bytes.size() == 2) return pair_rank_[PairIndex(bytes.data())];
    const int32_t r = Find(bytes);
    return r < 0 ? kNoRank : static_cast<uint32_t>(r);
  }
  uint32_t ByteRank(unsigned char b) const { return byte_rank_[b]; }

  bool Has(int32_t rank) const {
    return rank >= 0 && static_cast<size_t>(rank) < length_.size() && length_[rank] != kGap;
  }
  std::string_view Bytes(int32_t rank) const {
    return std::string_view(arena_.data() + offset_[rank], length_[rank]);
  }
  size_t end_rank() const { return length_.size(); }

 private:
  static constexpr uint32_t kGap = std::numeric_limits<uint32_t>::max();
  struct Slot {
    uint32_t tag = 0;   // high hash bits, to skip most memcmps on collisions
    int32_t rank = -1;  // -1: empty
    uint32_t offset = 0;
    uint32_t length = 0;
  };
  static size_t PairIndex(const char* p) {
    return static_cast<size_t>(static_cast<unsigned char>(p[0])) << 8 |
           static_cast<unsigned char>(p[1]);
  }

  std::string arena_;
  std::vector<uint32_t> offset_;
  std::vector<uint32_t> length_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  std::array<uint32_t, 256> byte_rank_;
  std::vector<uint32_t> pair_rank_;  // indexed by (first byte << 8 | second byte)
};

TiktokenOptions Llama3TiktokenOptions() {
  // Meta's tokenizer.py (llama-models, Llama 3.1 onwards): twelve named tokens, then
  // <|reserved_special_token_N|> for the remaining ids with N continuing from 2.
  static constexpr const char* kNamed[] = {"<|begin_of_text|>",
                                           "<|end_of_text|>",
                                           "<|reserved_special_token_0|>",
                                           "<|reserved_special_token_1|>",
                                           "<|finetune_right_pad_id|>",
                                           "<|step_id|>",
                                           "<|start_header_id|>",
                                           "<|end_header_id|>",
                                           "<|eom_id|>",
                                           "<|eot_id|>",
                                           "<|python_tag|>",
                                           "<|image|>"};
  constexpr int kNumSpecial = 256;
  constexpr int kNumNamed = static_cast<int>(std::size(kNamed));
  TiktokenOptions options;
  for (int i = 0; i < kNumSpecial; ++i) {
    std::string content =
        i < kNumNamed ? kNamed[i]
                      : "<|reserved_special_token_" + std::to_string(2 + i - kNumNamed) + "|>";
    options.added_tokens.push_back(
        {static_cast<int32_t>(kLlama3Ranks) + i, std::move(content), true});
  }
  options.bos_id = static_cast<int32_t>(kLlama3Ranks);
  return options;
}

// Per thread, direct-mapped by hash: how BPE split recent pieces that are not tokens whole.
// Each thread owns its cache, so lookups take no lock; an entry records the serial of the
// tokenizer that wrote it, so entries of another (or a destroyed) tokenizer are misses.
struct TiktokenTokenizer::PieceCache {
  static constexpr size_t kEntries = 4096;
  static constexpr size_t kMaxPiece = 24;
  static constexpr size_t kMaxIds = 8;
  struct Entry {
    uint64_t owner = 0;
    uint8_t length = 0;
    uint8_t num_ids = 0;
    char piece[kMaxPiece];
    int32_t ids[kMaxIds];
  };
  std::array<Entry, kEntries> entries;

  static PieceCache& ForThread() {
    thread_local std::unique_ptr<PieceCache> cache = std::make_unique<PieceCache>();
    return *cache;
  }
};

namespace {
std::atomic<uint64_t> next_tokenizer_serial{1};
}  // namespace

TiktokenTokenizer::TiktokenTokenizer() : serial_(next_tokenizer_serial.fetch_add(1)) {}
TiktokenTokenizer::~TiktokenTokenizer() = default;

bool TiktokenTokenizer::LooksLikeRankFile(std::string_view head) {
  // Judge complete lines only: `head` may end mid-line.
  const size_t last_newline = head.rfind('\n');
  if (last_newline == std::string_view::npos) return false;
  head = head.substr(0, last_newline);
  size_t pos = 0;
  int lines = 0;
  while (pos <= head.size()) {
    size_t end = head.find('\n', pos);
    if (end == std::string_view::npos) end = head.size();
    std::string_view line = head.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    if (space == 0 || space == std::string_view::npos || space + 1 == line.size()) return false;
    for (size_t i = 0; i < space; ++i) {
      if (Base64Value(line[i]) < 0 && line[i] != '=') return false;
    }
    for (size_t i = space + 1; i < line.size(); ++i) {
      if (line[i] < '0' || line[i] > '9') return false;
    }
    ++lines;
  }
  return lines > 0;
}

StatusOr<std::unique_ptr<TiktokenTokenizer>> TiktokenTokenizer::Load(
    const std::filesystem::path& rank_file) {
  TANDEM_ASSIGN_OR_RETURN(std::string contents, ReadFileToString(rank_file));
  TiktokenOptions options =
      CountRankLines(contents) == kLlama3Ranks ? Llama3TiktokenOptions() : TiktokenOptions{};
  const std::filesystem::path config = rank_file.parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::is_regular_file(config, ec)) {
    TANDEM_RETURN_IF_ERROR(ApplyTokenizerConfig(config, options));
  }
  return Create(contents, std::move(options), rank_file.string());
}

StatusOr<std::unique_ptr<TiktokenTokenizer>> TiktokenTokenizer::Create(
    std::string_view rank_file_contents, TiktokenOptions options, std::string_view source) {
  TANDEM_ASSIGN_OR_RETURN(std::vector<RankLine> lines, ParseRankFile(rank_file_contents, source));
  std::unique_ptr<TiktokenTokenizer> tok(new TiktokenTokenizer());
  tok->ranks_ = std::make_unique<RankTable>(lines);
  for (const auto& l : lines) {
    if (!tok->ranks_->Insert(l.bytes, l.rank)) {
      return InvalidArgumentError(std::string(source) + ": rank " + std::to_string(l.rank) +
                                  " or its token appears twice");
    }
  }
  tok->rank_count_ = lines.size();
  // Byte BPE starts from single bytes: without all 256 some text could not be encoded.
  for (int b = 0; b < 256; ++b) {
    if (tok->ranks_->ByteRank(static_cast<unsigned char>(b)) == kNoRank) {
      return InvalidArgumentError(std::string(source) + ": no rank for the single byte " +
                                  std::to_string(b));
    }
  }
  auto regex = Regex::Compile(options.pattern);
  if (!regex.ok()) return regex.status().WithContext(std::string(source) + ": pattern");
  tok->regex_ = std::move(regex).value();

  int32_t max_id = static_cast<int32_t>(tok->ranks_->end_rank()) - 1;
  for (auto& a : options.added_tokens) {
    if (a.id < 0 || a.content.empty() || tok->ranks_->Has(a.id) ||
        tok->added_by_id_.count(a.id) != 0 || tok->added_by_content_.count(a.content) != 0) {
      return InvalidArgumentError(std::string(source) + ": added token " + std::to_string(a.id) +
                                  " '" + a.content +
                                  "' is empty, negative, repeated or collides with a rank");
    }
    max_id = std::max(max_id, a.id);
    tok->added_first_byte_[static_cast<unsigned char>(a.content[0])] = true;
    if (std::find(tok->added_lengths_.begin(), tok->added_lengths_.end(), a.content.size()) ==
        tok->added_lengths_.end()) {
      tok->added_lengths_.push_back(a.content.size());
    }
    tok->added_by_content_.emplace(a.content, a.id);
    tok->added_by_id_.emplace(a.id, Added{std::move(a.content), a.special});
  }
  std::sort(tok->added_lengths_.rbegin(), tok->added_lengths_.rend());
  for (const auto& special : {options.bos_id, options.eos_id}) {
    if (special && tok->added_by_id_.count(*special) == 0) {
      return InvalidArgumentError(std::string(source) + ": BOS/EOS id " + std::to_string(*special) +
                                  " is not an added token");
    }
  }
  tok->bos_id_ = options.bos_id;
  tok->eos_id_ = options.eos_id;
  tok->vocab_size_ = max_id + 1;
  return tok;
}

bool TiktokenTokenizer::FindAdded(std::string_view text, size_t from, size_t* begin, size_t* end,
                                  int32_t* id) const {
  if (added_lengths_.empty()) return false;
  for (size_t pos = from; pos < text.size(); ++pos) {
    if (!added_first_byte_[static_cast<unsigned char>(text[pos])]) continue;
    for (size_t len : added_lengths_) {
      if (len > text.size() - pos) continue;
      auto it = added_by_content_.find(text.substr(pos, len));
      if (it != added_by_content_.end()) {
        *begin = pos;
        *end = pos + len;
        *id = it->second;
        return true;
      }
    }
  }
  return false;
}

void TiktokenTokenizer::EncodePiece(std::string_view piece, std::vector<int32_t>& ids) const {
  // tiktoken looks the whole piece up first, so a word that is a token stays one even where
  // merging its bytes would take another path.
  const uint64_t hash = HashBytes(piece.data(), piece.size());
  if (const int32_t whole = ranks_->Find(piece, hash); whole >= 0) {
    ids.push_back(whole);
    return;
  }
  PieceCache::Entry* entry = nullptr;
  if (piece.size() <= PieceCache::kMaxPiece) {
    entry = &PieceCache::ForThread().entries[(hash >> 20) & (PieceCache::kEntries - 1)];
    if (entry->owner == serial_ && entry->length == piece.size() &&
        std::memcmp(entry->piece, piece.data(), piece.size()) == 0) {
      ids.insert(ids.end(), entry->ids, entry->ids + entry->num_ids);
      return;
    }
  }
  const size_t first = ids.size();
  BytePairMerge(piece, ids);
  if (entry != nullptr && ids.size() - first <= PieceCache::kMaxIds) {
    entry->owner = serial_;
    entry->length = static_cast<uint8_t>(piece.size());
    entry->num_ids = static_cast<uint8_t>(ids.size() - first);
    std::memcpy(entry->piece, piece.data(), piece.size());
    std::copy(ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end(), entry->ids);
  }
}

void TiktokenTokenizer::BytePairMerge(std::string_view piece, std::vector<int32_t>& ids) const {
  const size_t n = piece.size();
  if (n <= kShortPiece) {
    // parts[i] starts at byte `start`, is token `token`, and `rank` is the rank of it merged
    // with the next part (which, when merged, is the new part's token).
    struct Part {
      uint32_t start;
      uint32_t rank;
      uint32_t token;
    };
    std::array<Part, kShortPiece + 1> parts;
    size_t count = n + 1;
    for (size_t i = 0; i < n; ++i) {
      parts[i] = {static_cast<uint32_t>(i), kNoRank,
                  ranks_->ByteRank(static_cast<unsigned char>(piece[i]))};
    }
    parts[n] = {static_cast<uint32_t>(n), kNoRank, kNoRank};
    // Rank of merging parts[i] with the part `skip` + 1 places later.
    auto rank_of = [&](size_t i, size_t skip) -> uint32_t {
      if (i + skip + 2 >= count) return kNoRank;
      return ranks_->FindRank(
          piece.substr(parts[i].start, parts[i + skip + 2].start - parts[i].start));
    };
    for (size_t i = 0; i + 2 < count; ++i) parts[i].rank = rank_of(i, 0);
    while (count > 2) {
      uint32_t best = kNoRank;
      size_t at = 0;
      for (size_t i = 0; i + 2 < count; ++i) {
        if (parts[i].rank < best) {
          best = parts[i].rank;
          at = i;
        }
      }
      if (best == kNoRank) break;
      parts[at].token = best;
      parts[at].rank = rank_of(at, 1);
      if (at > 0) parts[at - 1].rank = rank_of(at - 1, 1);
      std::copy(parts.begin() + at + 2, parts.begin() + count, parts.begin() + at + 1);
      --count;
    }
    for (size_t i = 0; i + 1 < count; ++i) ids.push_back(static_cast<int32_t>(parts[i].token));
    return;
  }

  // Long piece: the same merge order, driven by a min-heap of (rank, start of left part) with
  // stale entries skipped. Parts are named by their start byte.
  std::vector<uint32_t> next(n + 1), prev(n + 1), token(n);
  std::vector<bool> alive(n + 1, true);
  for (size_t i = 0; i <= n; ++i) {
    next[i] = static_cast<uint32_t>(i + 1);
    prev[i] = i == 0 ? 0 : static_cast<uint32_t>(i - 1);
    if (i < n) token[i] = ranks_->ByteRank(static_cast<unsigned char>(piece[i]));
  }
  struct Entry {
    uint32_t rank, start, end;
    bool operator>(const Entry& o) const {
      return rank != o.rank ? rank > o.rank : start > o.start;
    }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  auto push_pair = [&](uint32_t left) {
    const uint32_t mid = next[left];
    if (mid >= n) return;
    const uint32_t end = next[mid];
    const uint32_t r = ranks_->FindRank(piece.substr(left, end - left));
    if (r != kNoRank) heap.push({r, left, end});
  };
  for (uint32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    if (!alive[e.start]) continue;
    const uint32_t mid = next[e.start];
    if (mid >= n || next[mid] != e.end) continue;
    alive[mid] = false;
    next[e.start] = e.end;
    token[e.start] = e.rank;
    if (e.end <= n) prev[e.end] = e.start;
    push_pair(e.start);
    if (e.start > 0) push_pair(prev[e.start]);
  }
  for (uint32_t i = 0; i < n; i = next[i]) ids.push_back(static_cast<int32_t>(token[i]));
}

void TiktokenTokenizer::EncodeOrdinary(std::string_view text, std::vector<int32_t>& ids) const {
  size_t last = 0;
  regex_->ForEachMatch(text, [&](size_t begin, size_t end) {
    // Text no match covers is kept as its own piece (tokenizer.json's Split does the same);
    // the Llama 3 pattern leaves none.
    if (begin > last) EncodePiece(text.substr(last, begin - last), ids);
    EncodePiece(text.substr(begin, end - begin), ids);
    last = end;
  });
  if (last < text.size()) EncodePiece(text.substr(last), ids);
}

StatusOr<std::vector<int32_t>> TiktokenTokenizer::Encode(std::string_view text,
                                                         bool add_special_tokens) const {
  if (auto bad = FindInvalidUtf8(text)) {
    return InvalidArgumentError("text is not valid UTF-8 at byte offset " + std::to_string(*bad));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special_tokens && bos_id_) ids.push_back(*bos_id_);
  size_t pos = 0;
  size_t begin = 0, end = 0;
  int32_t id = 0;
  while (FindAdded(text, pos, &begin, &end, &id)) {
    if (begin > pos) EncodeOrdinary(text.substr(pos, begin - pos), ids);
    ids.push_back(id);
    pos = end;
  }
  if (pos < text.size()) EncodeOrdinary(text.substr(pos), ids);
  if (add_special_tokens && eos_id_) ids.push_back(*eos_id_);
  return ids;
}

StatusOr<std::string> TiktokenTokenizer::Decode(std::span<const int32_t> ids,
                                                bool skip_special_tokens) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    if (ranks_->Has(id)) {
      bytes += ranks_->Bytes(id);
      continue;
    }
    auto it = added_by_id_.find(id);
    if (it == added_by_id_.end()) {
      return InvalidArgumentError("token id " + std::to_string(id) +
                                  " is not in the vocabulary (size " + std::to_string(vocab_size_) +
                                  ")");
    }
    if (!(skip_special_tokens && it->second.special)) bytes += it->second.content;
  }
  if (!FindInvalidUtf8(bytes)) return bytes;
  return SanitizeUtf8(bytes);
}

std::optional<std::string> TiktokenTokenizer::IdToToken(int32_t id) const {
  if (ranks_->Has(id)) {
    std::string out;
    for (char c : ranks_->Bytes(id)) {
      AppendUtf8(Alphabet().byte_to_char[static_cast<unsigned char>(c)], out);
    }
    return out;
  }
  auto it = added_by_id_.find(id);
  if (it == added_by_id_.end()) return std::nullopt;
  return it->second.content;
}

std::optional<int32_t> TiktokenTokenizer::TokenToId(std::string_view token) const {
  if (auto it = added_by_content_.find(token); it != added_by_content_.end()) {
    return it->second;
  }
  if (FindInvalidUtf8(token)) return std::nullopt;
  std::string bytes;
  const auto& to_byte = Alphabet().char_to_byte;
  for (size_t pos = 0; pos < token.size();) {
    auto it = to_byte.find(NextCodePoint(token, pos));
    if (it == to_byte.end()) return std::nullopt;
    bytes.push_back(static_cast<char>(it->second));
  }
  const int32_t rank = ranks_->Find(bytes);
  if (rank < 0) return std::nullopt;
  return rank;
}

bool TiktokenTokenizer::IsSpecial(int32_t id) const {
  auto it = added_by_id_.find(id);
  return it != added_by_id_.end() && it->second.special;
}

}  // namespace tandem::tokenizer
