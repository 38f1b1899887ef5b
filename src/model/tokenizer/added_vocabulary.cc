#include "model/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/status_macros.h"
#include "model/tokenizer/json_spec.h"
#include "model/tokenizer/normalizer.h"
#include "model/tokenizer/pre_tokenizer.h"
#include "model/tokenizer/utf8.h"

namespace tandem::tokenizer {
namespace {

using Json = nlohmann::json;

// The character before byte `end` of `text` (which must not be 0).
char32_t CharBefore(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return NextCodePoint(text, start);
}

// Where the run of whitespace ending at `end` begins.
size_t WhitespaceRunStart(std::string_view text, size_t end) {
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    if (!IsUnicodeWhitespace(NextCodePoint(text, pos))) break;
    end = start;
  }
  return end;
}

// Where the run of whitespace starting at `begin` ends.
size_t WhitespaceRunEnd(std::string_view text, size_t begin) {
  while (begin < text.size()) {
    size_t pos = begin;
    if (!IsUnicodeWhitespace(NextCodePoint(text, pos))) break;
    begin = pos;
  }
  return begin;
}

}  // namespace

StatusOr<std::unique_ptr<AddedVocabulary>> AddedVocabulary::Parse(const nlohmann::json& spec,
                                                                  const Normalizer* normalizer,
                                                                  std::string_view source) {
  std::unique_ptr<AddedVocabulary> vocab(new AddedVocabulary());
  if (spec.is_null()) return vocab;
  if (!spec.is_array()) return FieldError(source, "added_tokens", "must be an array");
  vocab->tokens_.reserve(spec.size());
  for (size_t i = 0; i < spec.size(); ++i) {
    const Json& entry = spec[i];
    const std::string path = "added_tokens[" + std::to_string(i) + "]";
    if (!entry.is_object()) return FieldError(source, path, "must be an object");
    AddedToken token;
    auto id = entry.find("id");
    if (id == entry.end()) return FieldError(source, path + ".id", "is missing");
    if (!id->is_number_integer() || id->get<int64_t>() < 0 || id->get<int64_t>() > INT32_MAX - 1) {
      return FieldError(source, path + ".id", "must be a non-negative integer");
    }
    token.id = static_cast<int32_t>(id->get<int64_t>());
    auto content = entry.find("content");
    if (content == entry.end()) return FieldError(source, path + ".content", "is missing");
    if (!content->is_string()) return FieldError(source, path + ".content", "must be a string");
    token.content = content->get<std::string>();
    TANDEM_RETURN_IF_ERROR(ReadBool(entry, "single_word", source, path, &token.single_word));
    TANDEM_RETURN_IF_ERROR(ReadBool(entry, "lstrip", source, path, &token.lstrip));
    TANDEM_RETURN_IF_ERROR(ReadBool(entry, "rstrip", source, path, &token.rstrip));
    TANDEM_RETURN_IF_ERROR(ReadBool(entry, "normalized", source, path, &token.normalized));
    TANDEM_RETURN_IF_ERROR(ReadBool(entry, "special", source, path, &token.special));
    vocab->tokens_.push_back(std::move(token));
  }
  for (size_t i = 0; i < vocab->tokens_.size(); ++i) {
    const AddedToken& token = vocab->tokens_[i];
    vocab->by_id_[token.id] = i;
    vocab->by_content_[token.content] = token.id;
    vocab->id_end_ = std::max(vocab->id_end_, token.id + 1);
  }
  // Matching order as `tokenizers` builds it: special tokens, then the others.
  for (const bool special : {true, false}) {
    for (const AddedToken& token : vocab->tokens_) {
      if (token.special != special || token.content.empty()) continue;
      if (!token.normalized) {
        vocab->raw_.patterns.push_back({token.content, &token});
        continue;
      }
      std::string form;
      if (normalizer != nullptr) {
        normalizer->Normalize(token.content, form);
      } else {
        form = token.content;
      }
      if (!form.empty()) vocab->normalized_.patterns.push_back({std::move(form), &token});
    }
  }
  vocab->BuildSet(vocab->raw_);
  vocab->BuildSet(vocab->normalized_);
  return vocab;
}

void AddedVocabulary::BuildSet(MatchingSet& set) {
  set.by_first_byte.assign(256, {});
  for (size_t i = 0; i < set.patterns.size(); ++i) {
    const auto first = static_cast<unsigned char>(set.patterns[i].text[0]);
    set.by_first_byte[first].push_back(i);
    set.has_first_byte[first] = true;
  }
  for (auto& bucket : set.by_first_byte) {
    // Longest first; equal lengths keep the declaration order.
    std::stable_sort(bucket.begin(), bucket.end(), [&set](size_t a, size_t b) {
      return set.patterns[a].text.size() > set.patterns[b].text.size();
    });
  }
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocabulary::FindByContent(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

void AddedVocabulary::Split(std::string_view text, bool normalized_set,
                            std::vector<TextSegment>& out) const {
  out.clear();
  const MatchingSet& set = normalized_set ? normalized_ : raw_;
  if (text.empty()) return;
  if (set.patterns.empty()) {
    out.push_back({0, text.size(), -1});
    return;
  }
  size_t start_offset = 0;  // End of the last token cut out.
  size_t pos = 0;           // Where the search for the next match resumes.
  while (pos < text.size()) {
    // Leftmost match; at that position the longest pattern.
    size_t match_begin = text.size();
    const Pattern* match = nullptr;
    for (size_t p = pos; p < text.size() && match == nullptr; ++p) {
      const auto byte = static_cast<unsigned char>(text[p]);
      if (!set.has_first_byte[byte]) continue;
      for (const size_t index : set.by_first_byte[byte]) {
        const std::string& candidate = set.patterns[index].text;
        if (text.size() - p >= candidate.size() &&
            std::memcmp(text.data() + p, candidate.data(), candidate.size()) == 0) {
          match = &set.patterns[index];
          match_begin = p;
          break;
        }
      }
    }
    if (match == nullptr) break;
    size_t start = match_begin;
    size_t stop = match_begin + match->text.size();
    // The search goes on after the raw match, even when the token is discarded below.
    pos = stop;
    const AddedToken& token = *match->token;
    if (token.single_word) {
      const bool space_before = start == 0 || !IsUnicodeWordChar(CharBefore(text, start));
      size_t after = stop;
      const bool space_after =
          stop == text.size() || !IsUnicodeWordChar(NextCodePoint(text, after));
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) start = std::max(WhitespaceRunStart(text, start), start_offset);
    if (token.rstrip) stop = WhitespaceRunEnd(text, stop);
    if (start < start_offset) continue;  // Overlaps whitespace a previous token absorbed.
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, token.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace tandem::tokenizer
