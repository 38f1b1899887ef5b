#include "frontend/text_stream.h"

#include <algorithm>
#include <utility>

namespace tandem::frontend {

TextStream::TextStream(const tokenizer::Tokenizer& tokenizer, bool skip_special_tokens,
                       std::span<const int32_t> prompt_ids, std::vector<std::string> stop)
    : detokenizer_(tokenizer, skip_special_tokens, prompt_ids) {
  for (std::string& s : stop) {
    if (!s.empty()) stop_.push_back(std::move(s));
  }
}

std::string TextStream::Push(int32_t id) {
  if (stopped_) return {};
  pending_ += detokenizer_.Push(id);
  return TakeFinal();
}

std::string TextStream::Finish() {
  if (stopped_) return {};
  pending_ += detokenizer_.Flush();
  std::string out = TakeFinal();
  if (!stopped_) {
    // Nothing more can complete a stop string.
    out += pending_;
    emitted_bytes_ += pending_.size();
    pending_.clear();
  }
  return out;
}

std::string TextStream::TakeFinal() {
  // Everything before pending_ was checked: no stop string starts there (see the hold-back
  // below), so the earliest match lies within pending_.
  size_t match = std::string::npos;
  for (const std::string& s : stop_) match = std::min(match, pending_.find(s));
  if (match != std::string::npos) {
    std::string out = pending_.substr(0, match);
    emitted_bytes_ += out.size();
    pending_.clear();
    stopped_ = true;
    return out;
  }
  // Hold back the longest tail of pending_ that is a proper prefix of a stop string. Such a
  // tail starts where a stop string's first character does, so the cut is on a character
  // boundary.
  size_t hold = 0;
  for (const std::string& s : stop_) {
    for (size_t len = std::min(s.size() - 1, pending_.size()); len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, out.size());
  emitted_bytes_ += out.size();
  return out;
}

}  // namespace tandem::frontend
