#include "cli/bench/stream_chunk.h"

#include <charconv>

namespace tandem::bench {
namespace {

// Which object or value the scanner is inside, as far as the fields we keep go.
enum class Ctx { kOther, kRoot, kChoice, kDelta, kUsage, kDetails, kError };

// Where a value read under key `key` of an object of kind `parent` lands.
enum class Slot { kNone, kContent, kPromptTokens, kCompletionTokens, kCachedTokens, kErrorMessage };

class Scanner {
 public:
  Scanner(std::string_view text, StreamChunk* out) : text_(text), out_(out) {}

  bool Document() {
    Ws();
    if (!Peek('{')) return false;
    if (!Object(Ctx::kRoot, 0)) return false;
    Ws();
    return pos_ == text_.size();
  }

 private:
  static constexpr int kMaxDepth = 64;

  bool Peek(char c) const { return pos_ < text_.size() && text_[pos_] == c; }
  void Ws() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\r' || text_[pos_] == '\t')) {
      ++pos_;
    }
  }

  // The raw (still escaped) contents of a string literal.
  bool String(std::string_view* raw) {
    if (!Peek('"')) return false;
    const size_t start = ++pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '"') {
        *raw = text_.substr(start, pos_ - start);
        ++pos_;
        return true;
      }
      pos_ += c == '\\' ? 2 : 1;
    }
    return false;
  }

  bool Number(int64_t* integer) {
    const size_t start = pos_;
    if (Peek('-')) ++pos_;
    const size_t digits = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    if (pos_ == digits) return false;
    const size_t int_end = pos_;
    bool fraction = false;
    if (Peek('.')) {
      fraction = true;
      ++pos_;
      const size_t f = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      if (pos_ == f) return false;
    }
    if (Peek('e') || Peek('E')) {
      fraction = true;
      ++pos_;
      if (Peek('+') || Peek('-')) ++pos_;
      const size_t e = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      if (pos_ == e) return false;
    }
    if (integer != nullptr && !fraction) {
      std::from_chars(text_.data() + start, text_.data() + int_end, *integer);
    }
    return true;
  }

  bool Literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  static Ctx ChildContext(Ctx parent, std::string_view key) {
    switch (parent) {
      case Ctx::kRoot:
        if (key == "choices") return Ctx::kChoice;  // The array's elements are choices.
        if (key == "usage") return Ctx::kUsage;
        if (key == "error") return Ctx::kError;
        break;
      case Ctx::kChoice:
        if (key == "delta") return Ctx::kDelta;
        break;
      case Ctx::kUsage:
        if (key == "prompt_tokens_details") return Ctx::kDetails;
        break;
      default:
        break;
    }
    return Ctx::kOther;
  }

  static Slot SlotOf(Ctx parent, std::string_view key) {
    switch (parent) {
      case Ctx::kChoice:
        return key == "text" ? Slot::kContent : Slot::kNone;
      case Ctx::kDelta:
        return key == "content" || key == "reasoning_content" ? Slot::kContent : Slot::kNone;
      case Ctx::kUsage:
        if (key == "prompt_tokens") return Slot::kPromptTokens;
        if (key == "completion_tokens") return Slot::kCompletionTokens;
        return Slot::kNone;
      case Ctx::kDetails:
        return key == "cached_tokens" ? Slot::kCachedTokens : Slot::kNone;
      case Ctx::kError:
        return key == "message" ? Slot::kErrorMessage : Slot::kNone;
      default:
        return Slot::kNone;
    }
  }

  // A value in context `ctx` (the object kind it would be), stored to `slot` when scalar.
  bool Value(Ctx ctx, Slot slot, int depth) {
    if (depth > kMaxDepth || pos_ >= text_.size()) return false;
    switch (text_[pos_]) {
      case '{':
        return Object(ctx, depth + 1);
      case '[':
        return Array(ctx, depth + 1);
      case '"': {
        std::string_view raw;
        if (!String(&raw)) return false;
        if (slot == Slot::kContent && !raw.empty()) out_->has_content = true;
        if (slot == Slot::kErrorMessage) out_->error_message = raw;
        if (ctx == Ctx::kError) {  // "error": "message"
          out_->is_error = true;
          out_->error_message = raw;
        }
        return true;
      }
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default: {
        int64_t* target = nullptr;
        if (slot == Slot::kPromptTokens) target = &out_->prompt_tokens;
        if (slot == Slot::kCompletionTokens) target = &out_->completion_tokens;
        if (slot == Slot::kCachedTokens) target = &out_->cached_tokens;
        return Number(target);
      }
    }
  }

  bool Object(Ctx ctx, int depth) {
    ++pos_;  // '{'
    if (ctx == Ctx::kError) out_->is_error = true;
    Ws();
    if (Peek('}')) {
      ++pos_;
      return true;
    }
    while (true) {
      Ws();
      std::string_view key;
      if (!String(&key)) return false;
      Ws();
      if (!Peek(':')) return false;
      ++pos_;
      Ws();
      if (!Value(ChildContext(ctx, key), SlotOf(ctx, key), depth)) return false;
      Ws();
      if (Peek(',')) {
        ++pos_;
        continue;
      }
      if (Peek('}')) {
        ++pos_;
        return true;
      }
      return false;
    }
  }

  // An array whose elements are objects of kind `ctx` (choices) or anything (kOther).
  bool Array(Ctx ctx, int depth) {
    ++pos_;  // '['
    const Ctx element = ctx == Ctx::kChoice ? Ctx::kChoice : Ctx::kOther;
    Ws();
    if (Peek(']')) {
      ++pos_;
      return true;
    }
    while (true) {
      Ws();
      if (!Value(element, Slot::kNone, depth)) return false;
      Ws();
      if (Peek(',')) {
        ++pos_;
        continue;
      }
      if (Peek(']')) {
        ++pos_;
        return true;
      }
      return false;
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
  StreamChunk* out_;
};

}  // namespace

Status ScanStreamChunk(std::string_view json, StreamChunk* out) {
  *out = StreamChunk();
  Scanner scanner(json, out);
  if (!scanner.Document()) {
    constexpr size_t kShown = 120;
    return InvalidArgumentError("malformed SSE event (not a JSON object): '" +
                                std::string(json.substr(0, kShown)) +
                                (json.size() > kShown ? "...'" : "'"));
  }
  return OkStatus();
}

}  // namespace tandem::bench
