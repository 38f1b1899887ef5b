#include "model/tokenizer/pre_tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/status_macros.h"
#include "model/tokenizer/json_spec.h"
#include "model/tokenizer/utf8.h"

namespace tandem::tokenizer {
namespace {

using Json = nlohmann::json;

// The regex ByteLevel splits with when use_regex is set (GPT-2's).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Whitespace's pattern: the words and runs of punctuation it keeps.
constexpr std::string_view kWhitespacePattern = R"(\w+|[^\w\s]+)";

// ---- Splitting, as NormalizedString::split does it ----

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

StatusOr<SplitBehavior> ParseBehavior(const Json& object, std::string_view source,
                                      const std::string& path, SplitBehavior fallback) {
  const Json* value = FindField(object, "behavior");
  if (value == nullptr) return fallback;
  if (!value->is_string()) return FieldError(source, path + ".behavior", "must be a string");
  const std::string name = value->get<std::string>();
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return FieldError(source, path + ".behavior", "has unknown value '" + name + "'");
}

// A stretch of a word: matched by the pattern or the gap between two matches.
struct Stretch {
  size_t begin;
  size_t end;
  bool is_match;
};

// Working buffers of the split functions, per thread so a call allocates nothing once warm.
struct SplitScratch {
  std::vector<WordSpan> input;
  std::vector<std::pair<size_t, size_t>> matches;
  std::vector<Stretch> stretches;
  std::vector<Stretch> merged;
};
SplitScratch& ThreadSplitScratch() {
  thread_local SplitScratch scratch;
  return scratch;
}

// Turns match ranges (relative to a word of `length` bytes) into stretches covering the word.
void MatchesToStretches(const std::vector<std::pair<size_t, size_t>>& matches, size_t length,
                        bool invert, std::vector<Stretch>& out) {
  out.clear();
  size_t previous = 0;
  for (const auto& [begin, end] : matches) {
    if (previous < begin) out.push_back({previous, begin, invert});
    out.push_back({begin, end, !invert});
    previous = end;
  }
  if (previous < length) out.push_back({previous, length, invert});
}

// Applies `behavior` to the stretches of the word [base, base + length) of `word` and appends the
// resulting non-empty words to `out`. Mirrors NormalizedString::split, including how a match
// merges into its neighbour.
void EmitSplit(std::vector<Stretch>& stretches, SplitBehavior behavior, const WordSpan& word,
               std::vector<Stretch>& merged, std::vector<WordSpan>& out) {
  merged.clear();
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Stretch& s : stretches) merged.push_back({s.begin, s.end, false});
      break;
    case SplitBehavior::kRemoved:
      merged = stretches;  // is_match now means "remove".
      break;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Stretch& s : stretches) {
        if (s.is_match == previous_match && !merged.empty()) {
          merged.back().end = s.end;
        } else {
          merged.push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Stretch& s : stretches) {
        if (s.is_match && !previous_match && !merged.empty()) {
          merged.back().end = s.end;
        } else {
          merged.push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = stretches.rbegin(); it != stretches.rend(); ++it) {
        if (it->is_match && !previous_match && !merged.empty()) {
          merged.back().begin = it->begin;
        } else {
          merged.push_back({it->begin, it->end, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
  }
  for (const Stretch& s : merged) {
    if (s.is_match || s.end == s.begin) continue;
    out.push_back({word.begin + s.begin, word.begin + s.end, word.at_origin && s.begin == 0});
  }
}

// Each character satisfying `predicate` is one match (the char patterns of `tokenizers`).
template <typename Predicate>
void FindCharMatches(std::string_view text, Predicate predicate,
                     std::vector<std::pair<size_t, size_t>>& out) {
  out.clear();
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t begin = pos;
    const char32_t c = NextCodePoint(text, pos);
    if (predicate(c)) out.emplace_back(begin, pos);
  }
}

// Splits every word of `io` by the matches `find(word_text, matches)` reports.
template <typename Finder>
void SplitWords(PreTokenizedText& io, SplitBehavior behavior, bool invert, Finder find) {
  SplitScratch& scratch = ThreadSplitScratch();
  std::vector<WordSpan>& words = scratch.input;
  words.swap(io.words);
  io.words.clear();
  for (const WordSpan& word : words) {
    const std::string_view text(io.text.data() + word.begin, word.end - word.begin);
    scratch.matches.clear();
    find(text, scratch.matches);
    MatchesToStretches(scratch.matches, text.size(), invert, scratch.stretches);
    EmitSplit(scratch.stretches, behavior, word, scratch.merged, io.words);
  }
}

bool IsPunctuation(char32_t c) {
  // Rust's is_ascii_punctuation || is_punctuation (general categories P*).
  if (c < 0x80) {
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
           (c >= '{' && c <= '~');
  }
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category >= UTF8PROC_CATEGORY_PC && category <= UTF8PROC_CATEGORY_PO;
}

// ---- The pre-tokenizers ----

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(SplitPattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void PreTokenize(PreTokenizedText& io, PreTokenizedText&) const override {
    SplitWords(io, behavior_, invert_, [this](std::string_view text, auto& matches) {
      pattern_.FindMatches(text, matches);
    });
  }

 private:
  SplitPattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class CharSplitPreTokenizer : public PreTokenizer {
 public:
  using Predicate = bool (*)(char32_t, char32_t);
  CharSplitPreTokenizer(Predicate predicate, char32_t argument, SplitBehavior behavior)
      : predicate_(predicate), argument_(argument), behavior_(behavior) {}
  void PreTokenize(PreTokenizedText& io, PreTokenizedText&) const override {
    SplitWords(io, behavior_, false, [this](std::string_view text, auto& matches) {
      FindCharMatches(
          text, [this](char32_t c) { return predicate_(c, argument_); }, matches);
    });
  }

 private:
  Predicate predicate_;
  char32_t argument_;
  SplitBehavior behavior_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  void PreTokenize(PreTokenizedText& io, PreTokenizedText& scratch) const override {
    if (add_prefix_space_) {
      // Every word not starting with a space gets one, before the regex sees it.
      scratch.text.clear();
      scratch.words.clear();
      for (const WordSpan& word : io.words) {
        const size_t begin = scratch.text.size();
        if (io.text[word.begin] != ' ') scratch.text.push_back(' ');
        scratch.text.append(io.text, word.begin, word.end - word.begin);
        scratch.words.push_back({begin, scratch.text.size(), word.at_origin});
      }
      std::swap(io, scratch);
    }
    if (regex_ != nullptr) {
      SplitWords(io, SplitBehavior::kIsolated, false, [this](std::string_view text, auto& matches) {
        regex_->ForEachMatch(text, [&](size_t b, size_t e) { matches.emplace_back(b, e); });
      });
    }
    // Each byte becomes its printable character.
    scratch.text.clear();
    scratch.words.clear();
    scratch.text.reserve(io.text.size() * 2);
    for (const WordSpan& word : io.words) {
      const size_t begin = scratch.text.size();
      AppendByteLevel(std::string_view(io.text).substr(word.begin, word.end - word.begin),
                      scratch.text);
      scratch.words.push_back({begin, scratch.text.size(), word.at_origin});
    }
    std::swap(io, scratch);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;  // Null when use_regex is false.
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split)
      : replacement_(replacement), scheme_(scheme), split_(split) {
    AppendUtf8(replacement, replacement_text_);
  }

  void PreTokenize(PreTokenizedText& io, PreTokenizedText& scratch) const override {
    scratch.text.clear();
    scratch.words.clear();
    for (const WordSpan& word : io.words) {
      const std::string_view text(io.text.data() + word.begin, word.end - word.begin);
      const bool starts_with_replacement =
          text.starts_with(' ') || text.starts_with(replacement_text_);
      const bool prepend =
          !starts_with_replacement && (scheme_ == PrependScheme::kAlways ||
                                       (scheme_ == PrependScheme::kFirst && word.at_origin));
      const size_t begin = scratch.text.size();
      if (prepend) scratch.text += replacement_text_;
      for (const char c : text) {
        if (c == ' ') {
          scratch.text += replacement_text_;
        } else {
          scratch.text.push_back(c);
        }
      }
      scratch.words.push_back({begin, scratch.text.size(), word.at_origin});
    }
    std::swap(io, scratch);
    if (split_) {
      SplitWords(io, SplitBehavior::kMergedWithNext, false,
                 [this](std::string_view text, auto& matches) {
                   FindCharMatches(
                       text, [this](char32_t c) { return c == replacement_; }, matches);
                 });
    }
  }

 private:
  char32_t replacement_;
  std::string replacement_text_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void PreTokenize(PreTokenizedText& io, PreTokenizedText& scratch) const override {
    for (const auto& step : steps_) step->PreTokenize(io, scratch);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

// BertPreTokenizer: whitespace removed, then each punctuation character isolated.
class BertPreTokenizer : public PreTokenizer {
 public:
  void PreTokenize(PreTokenizedText& io, PreTokenizedText&) const override {
    SplitWords(io, SplitBehavior::kRemoved, false, [](std::string_view text, auto& matches) {
      FindCharMatches(text, IsUnicodeWhitespace, matches);
    });
    SplitWords(io, SplitBehavior::kIsolated, false, [](std::string_view text, auto& matches) {
      FindCharMatches(text, IsPunctuation, matches);
    });
  }
};

bool MatchWhitespace(char32_t c, char32_t) { return IsUnicodeWhitespace(c); }
bool MatchNumeric(char32_t c, char32_t) { return IsUnicodeNumeric(c); }
bool MatchPunctuation(char32_t c, char32_t) { return IsPunctuation(c); }
bool MatchEqual(char32_t c, char32_t target) { return c == target; }

}  // namespace

// ---- Unicode classes ----

bool IsUnicodeWhitespace(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool IsUnicodeNumeric(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category >= UTF8PROC_CATEGORY_ND && category <= UTF8PROC_CATEGORY_NO;
}

bool IsUnicodeWordChar(char32_t c) {
  if (c < 0x80) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  }
  if (c == 0x200C || c == 0x200D) return true;  // Join_Control.
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return (category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_NL) ||
         category == UTF8PROC_CATEGORY_PC;
}

namespace {

struct ByteLevelTables {
  // UTF-8 of each byte's character: one or two bytes (every character is below U+0200).
  std::array<std::array<char, 2>, 256> byte_to_text{};
  std::array<uint8_t, 256> byte_to_length{};
  std::array<int16_t, 512> char_to_byte{};
  constexpr ByteLevelTables() {
    char_to_byte.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const int c = printable ? b : 256 + next++;
      if (c < 0x80) {
        byte_to_text[b] = {static_cast<char>(c), '\0'};
        byte_to_length[b] = 1;
      } else {
        byte_to_text[b] = {static_cast<char>(0xC0 | (c >> 6)),
                           static_cast<char>(0x80 | (c & 0x3F))};
        byte_to_length[b] = 2;
      }
      char_to_byte[c] = static_cast<int16_t>(b);
    }
  }
};
constexpr ByteLevelTables kByteLevel;

}  // namespace

std::string_view ByteLevelChar(uint8_t byte) {
  return std::string_view(kByteLevel.byte_to_text[byte].data(), kByteLevel.byte_to_length[byte]);
}

int ByteLevelByte(char32_t c) { return c < 512 ? kByteLevel.char_to_byte[c] : -1; }

void AppendByteLevel(std::string_view bytes, std::string& out) {
  const size_t start = out.size();
  out.resize(start + 2 * bytes.size());
  char* p = out.data() + start;
  for (const char b : bytes) {
    const auto byte = static_cast<uint8_t>(b);
    std::memcpy(p, kByteLevel.byte_to_text[byte].data(), 2);
    p += kByteLevel.byte_to_length[byte];
  }
  out.resize(static_cast<size_t>(p - out.data()));
}

// ---- SplitPattern ----

StatusOr<SplitPattern> SplitPattern::Parse(const nlohmann::json& spec, std::string_view where) {
  if (!spec.is_object() || spec.size() != 1) {
    return InvalidArgumentError(std::string(where) +
                                " must be an object {\"String\": ...} or {\"Regex\": ...}");
  }
  const auto entry = spec.begin();
  const std::string& kind = entry.key();
  const nlohmann::json& value = entry.value();
  if (!value.is_string()) return InvalidArgumentError(std::string(where) + " must hold a string");
  if (kind == "String") return Literal(value.get<std::string>());
  if (kind == "Regex") {
    auto pattern = FromRegex(value.get<std::string>());
    if (!pattern.ok()) return pattern.status().WithContext(where);
    return pattern;
  }
  return InvalidArgumentError(std::string(where) + " has unknown pattern kind '" + kind + "'");
}

StatusOr<SplitPattern> SplitPattern::FromField(const nlohmann::json& spec, std::string_view source,
                                               const std::string& path) {
  const Json* pattern_spec = FindField(spec, "pattern");
  if (pattern_spec == nullptr) return FieldError(source, path + ".pattern", "is missing");
  return Parse(*pattern_spec, std::string(source) + ": field '" + path + ".pattern'");
}

SplitPattern SplitPattern::Literal(std::string text) {
  SplitPattern pattern;
  pattern.literal_ = std::move(text);
  return pattern;
}

StatusOr<SplitPattern> SplitPattern::FromRegex(std::string_view regex) {
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Regex> compiled, Regex::Compile(regex));
  SplitPattern pattern;
  pattern.regex_ = std::move(compiled);
  return pattern;
}

void SplitPattern::FindMatches(std::string_view text,
                               std::vector<std::pair<size_t, size_t>>& out) const {
  if (regex_ != nullptr) {
    regex_->ForEachMatch(text, [&out](size_t begin, size_t end) { out.emplace_back(begin, end); });
    return;
  }
  if (literal_.empty()) return;
  size_t pos = text.find(literal_);
  while (pos != std::string_view::npos) {
    out.emplace_back(pos, pos + literal_.size());
    pos = text.find(literal_, pos + literal_.size());
  }
}

void SplitPattern::ReplaceAll(std::string_view text, std::string_view content,
                              std::string& out) const {
  size_t previous = 0;
  if (regex_ != nullptr) {
    regex_->ForEachMatch(text, [&](size_t begin, size_t end) {
      out.append(text.substr(previous, begin - previous));
      out.append(content);
      previous = end;
    });
  } else if (!literal_.empty()) {
    for (size_t pos = text.find(literal_); pos != std::string_view::npos;
         pos = text.find(literal_, previous)) {
      out.append(text.substr(previous, pos - previous));
      out.append(content);
      previous = pos + literal_.size();
    }
  }
  out.append(text.substr(previous));
}

// ---- Parsing ----

StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const nlohmann::json& spec,
                                                          std::string_view source,
                                                          const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(const std::string type, ReadComponentType(spec, source, path));

  if (type == "Sequence") {
    TANDEM_ASSIGN_OR_RETURN(
        auto steps,
        ParseSequenceSteps<PreTokenizer>(spec, "pretokenizers", source, path, ParsePreTokenizer));
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(steps)));
  }
  if (type == "Split") {
    TANDEM_ASSIGN_OR_RETURN(SplitPattern pattern, SplitPattern::FromField(spec, source, path));
    const Json* behavior_spec = FindField(spec, "behavior");
    if (behavior_spec == nullptr) return FieldError(source, path + ".behavior", "is missing");
    TANDEM_ASSIGN_OR_RETURN(SplitBehavior behavior,
                            ParseBehavior(spec, source, path, SplitBehavior::kIsolated));
    bool invert = false;
    TANDEM_RETURN_IF_ERROR(ReadBool(spec, "invert", source, path, &invert));
    return std::unique_ptr<PreTokenizer>(
        new SplitPreTokenizer(std::move(pattern), behavior, invert));
  }
  if (type == "ByteLevel") {
    bool add_prefix_space = true, use_regex = true;
    TANDEM_RETURN_IF_ERROR(ReadBool(spec, "add_prefix_space", source, path, &add_prefix_space));
    TANDEM_RETURN_IF_ERROR(ReadBool(spec, "use_regex", source, path, &use_regex));
    std::unique_ptr<Regex> regex;
    if (use_regex) {
      TANDEM_ASSIGN_OR_RETURN(regex, Regex::Compile(kGpt2Pattern));
    }
    return std::unique_ptr<PreTokenizer>(
        new ByteLevelPreTokenizer(add_prefix_space, std::move(regex)));
  }
  if (type == "Metaspace") {
    char32_t replacement = 0;
    TANDEM_RETURN_IF_ERROR(ReadChar(spec, "replacement", source, path, &replacement));
    PrependScheme scheme = PrependScheme::kAlways;
    if (const Json* value = FindField(spec, "prepend_scheme"); value != nullptr) {
      const std::string name = value->is_string() ? value->get<std::string>() : "";
      if (name == "always") {
        scheme = PrependScheme::kAlways;
      } else if (name == "first") {
        scheme = PrependScheme::kFirst;
      } else if (name == "never") {
        scheme = PrependScheme::kNever;
      } else {
        return FieldError(source, path + ".prepend_scheme",
                          "must be one of 'always', 'first', 'never'");
      }
    }
    // Files written before prepend_scheme existed say add_prefix_space: false for "never".
    bool add_prefix_space = true;
    TANDEM_RETURN_IF_ERROR(ReadBool(spec, "add_prefix_space", source, path, &add_prefix_space));
    if (!add_prefix_space) scheme = PrependScheme::kNever;
    bool split = true;
    TANDEM_RETURN_IF_ERROR(ReadBool(spec, "split", source, path, &split));
    return std::unique_ptr<PreTokenizer>(new MetaspacePreTokenizer(replacement, scheme, split));
  }
  if (type == "Digits") {
    bool individual = false;
    TANDEM_RETURN_IF_ERROR(ReadBool(spec, "individual_digits", source, path, &individual));
    return std::unique_ptr<PreTokenizer>(new CharSplitPreTokenizer(
        MatchNumeric, 0, individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous));
  }
  if (type == "Whitespace") {
    // `tokenizers` keeps the matches of \w+|[^\w\s]+ and drops what lies between them.
    TANDEM_ASSIGN_OR_RETURN(SplitPattern pattern, SplitPattern::FromRegex(kWhitespacePattern));
    return std::unique_ptr<PreTokenizer>(
        new SplitPreTokenizer(std::move(pattern), SplitBehavior::kRemoved, /*invert=*/true));
  }
  if (type == "WhitespaceSplit") {
    return std::unique_ptr<PreTokenizer>(
        new CharSplitPreTokenizer(MatchWhitespace, 0, SplitBehavior::kRemoved));
  }
  if (type == "Punctuation") {
    TANDEM_ASSIGN_OR_RETURN(SplitBehavior behavior,
                            ParseBehavior(spec, source, path, SplitBehavior::kIsolated));
    return std::unique_ptr<PreTokenizer>(new CharSplitPreTokenizer(MatchPunctuation, 0, behavior));
  }
  if (type == "CharDelimiterSplit") {
    char32_t delimiter = 0;
    TANDEM_RETURN_IF_ERROR(ReadChar(spec, "delimiter", source, path, &delimiter));
    return std::unique_ptr<PreTokenizer>(
        new CharSplitPreTokenizer(MatchEqual, delimiter, SplitBehavior::kRemoved));
  }
  if (type == "BertPreTokenizer") return std::unique_ptr<PreTokenizer>(new BertPreTokenizer());
  return InvalidArgumentError(std::string(source) + ": unsupported pre_tokenizer '" + type +
                              "' (at " + path + ")");
}

}  // namespace tandem::tokenizer
