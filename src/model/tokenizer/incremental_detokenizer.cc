#include "model/tokenizer/incremental_detokenizer.h"

#include <algorithm>
#include <cctype>

namespace tandem::tokenizer {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool EndsWithReplacement(std::string_view text) { return text.ends_with(kReplacement); }

// Once this many ids sit before the window they are dropped, keeping memory O(window).
constexpr size_t kCompactAt = 256;

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens,
                                               std::span<const int32_t> prompt_ids)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {
  // "A" followed by an invalid byte: "A\uFFFD" when bytes are judged one sequence at a time,
  // "\uFFFD\uFFFD" when the whole run is.
  const auto a = tokenizer_.TokenToId("<0x41>"), ff = tokenizer_.TokenToId("<0xFF>");
  if (a && ff) {
    const int32_t probe[] = {*a, *ff};
    auto text = tokenizer_.Decode(probe, /*skip_special_tokens=*/false);
    byte_runs_fuse_ = text.ok() && !text->ends_with("A" + std::string(kReplacement));
  }
  const size_t keep = std::min(prompt_ids.size(), kPromptContext);
  ids_.assign(prompt_ids.end() - keep, prompt_ids.end());
  read_ = ids_.size();
  if (!DecodeRange(0, read_, &prefix_text_)) {
    // Context the tokenizer cannot decode is no context.
    ids_.clear();
    read_ = 0;
    prefix_text_.clear();
  }
}

bool IncrementalDetokenizer::IsBytePiece(int32_t id) const {
  const auto token = tokenizer_.IdToToken(id);
  return token && token->size() == 6 && token->starts_with("<0x") && token->back() == '>' &&
         std::isxdigit(static_cast<unsigned char>((*token)[3])) &&
         std::isxdigit(static_cast<unsigned char>((*token)[4]));
}

bool IncrementalDetokenizer::DecodeRange(size_t begin, size_t end, std::string* text) const {
  auto decoded = tokenizer_.Decode(std::span<const int32_t>(ids_).subspan(begin, end - begin),
                                   skip_special_tokens_);
  if (!decoded.ok()) return false;
  *text = std::move(decoded).value();
  return true;
}

void IncrementalDetokenizer::Advance(size_t new_read) {
  prefix_ = read_;
  read_ = new_read;
  if (!DecodeRange(prefix_, read_, &prefix_text_)) prefix_text_.clear();
  if (prefix_ >= kCompactAt) {
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_));
    read_ -= prefix_;
    prefix_ = 0;
  }
}

std::string IncrementalDetokenizer::Suffix(const std::string& text) const {
  if (text.starts_with(prefix_text_)) return text.substr(prefix_text_.size());
  size_t common = 0;
  const size_t limit = std::min(text.size(), prefix_text_.size());
  while (common < limit && text[common] == prefix_text_[common]) ++common;
  while (common > 0 && (static_cast<unsigned char>(text[common]) & 0xC0) == 0x80) --common;
  return text.substr(common);
}

std::string IncrementalDetokenizer::Push(int32_t id) {
  if (id < 0 || id >= tokenizer_.vocab_size()) {
    ++dropped_ids_;
    return {};
  }
  ids_.push_back(id);
  std::string text;
  if (!DecodeRange(prefix_, ids_.size(), &text)) {
    ids_.pop_back();
    ++dropped_ids_;
    return {};
  }
  ++num_tokens_;
  const size_t held = ids_.size() - read_;
  if (byte_runs_fuse_ && held < kMaxHeldByteRun && IsBytePiece(id)) return {};
  if (!EndsWithReplacement(text)) {
    // Nothing new (a token that decodes to nothing here): hold it, so that the window keeps the
    // left context that, e.g., a following "▁word" needs for its space.
    if (text.size() <= prefix_text_.size() && text.starts_with(prefix_text_)) return {};
    std::string out = Suffix(text);
    Advance(ids_.size());
    return out;
  }
  // A run of byte pieces that fuse is not final until it ends, and may be longer than three.
  if (held < kMaxHeldTokens || (byte_runs_fuse_ && IsBytePiece(id))) return {};
  // Long held back: the text up to the last three tokens is final when decoding those three
  // changes nothing before them (any character still arriving lies within them).
  const size_t cut = ids_.size() - 3;
  std::string settled;
  if (!DecodeRange(prefix_, cut, &settled) || settled.size() <= prefix_text_.size() ||
      !settled.starts_with(prefix_text_) || !text.starts_with(settled)) {
    return {};
  }
  std::string out = settled.substr(prefix_text_.size());
  Advance(cut);
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  if (read_ == ids_.size()) return {};
  std::string text;
  if (!DecodeRange(prefix_, ids_.size(), &text)) return {};
  std::string out = text.size() <= prefix_text_.size() && text.starts_with(prefix_text_)
                        ? std::string()
                        : Suffix(text);
  Advance(ids_.size());
  return out;
}

}  // namespace tandem::tokenizer
