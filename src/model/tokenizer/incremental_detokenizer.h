// IncrementalDetokenizer: turns generated token ids, pushed one at a time, into text as soon as
// it is final, for streaming. The algorithm is vLLM's / TGI's prefix-offset one: each Push
// decodes only a short window of recent ids, ids[prefix:], and emits what it adds past the
// decoded text of ids[prefix:read]. Text is held back while the window's decoded text ends in
// U+FFFD (a character whose bytes are still arriving across tokens, or a byte-fallback run), so
// nothing emitted is ever half a UTF-8 sequence.
//
// Contract: for ids pushed one by one, the concatenation of every Push result and a final Flush
// equals tokenizer.Decode(all ids, skip_special_tokens); with prompt context it equals the part
// of Decode(prompt + ids) that follows Decode(prompt) (so the first token's leading space is
// right). Each Push costs O(window): the window is the last emitted token plus those held back,
// normally a handful; it only grows across tokens that decode to nothing (skipped special tokens)
// or that keep the text ending in U+FFFD.
//
// Byte-fallback pieces ("<0xNN>"): some decoders (Hugging Face's ByteFallback) turn a whole run
// of them into U+FFFDs when any byte of the run is invalid, so a run's text is final only once a
// non-byte token ends it. The constructor probes the tokenizer for that behaviour and, when it
// has it, holds text back while the last token is a byte piece (up to kMaxHeldByteRun tokens,
// after which it emits what is whole, and only a later invalid byte of that same run could make
// the stream differ from Decode).
//
// Ids outside the tokenizer's vocabulary are dropped (they add no text) and counted in
// dropped_ids(); the engine should never produce one.
//
// Thread safety: not thread-safe (one per request stream); the Tokenizer must outlive it and may
// be shared by many detokenizers on many threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer/tokenizer.h"

namespace tandem::tokenizer {

class IncrementalDetokenizer {
 public:
  // Prompt ids decoded as left context before the first generated one (vLLM uses 5).
  static constexpr size_t kPromptContext = 5;
  // Held-back tokens after which trailing U+FFFD text is taken as final (invalid bytes rather
  // than a character still arriving) for all but the last three tokens. A character spans at
  // most four bytes, so at most three tokens can still be completing one.
  static constexpr size_t kMaxHeldTokens = 8;
  // Held-back tokens after which a run of byte pieces is emitted before it ends (see above).
  static constexpr size_t kMaxHeldByteRun = 64;

  // `prompt_ids`: the request's prompt, for context only (its text is not emitted). Only its
  // last kPromptContext ids are kept.
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens,
                         std::span<const int32_t> prompt_ids = {});
  IncrementalDetokenizer(const IncrementalDetokenizer&) = delete;
  IncrementalDetokenizer& operator=(const IncrementalDetokenizer&) = delete;

  // Appends `id`; returns the text it completes (possibly empty), always whole UTF-8 characters.
  std::string Push(int32_t id);

  // Returns the text still held back (trailing invalid bytes come out as U+FFFD). Pushing may
  // continue afterwards.
  std::string Flush();

  // Generated ids accepted so far (dropped ones excluded).
  size_t num_tokens() const { return num_tokens_; }
  size_t dropped_ids() const { return dropped_ids_; }

 private:
  // True when `id` is a byte-fallback piece "<0xNN>".
  bool IsBytePiece(int32_t id) const;
  // Decodes ids_[begin:end]; false when the tokenizer refuses.
  bool DecodeRange(size_t begin, size_t end, std::string* text) const;
  // Makes ids_[read_:new_read] emitted: the window moves to start at the old read offset.
  void Advance(size_t new_read);
  // The part of `text` past prefix_text_, or, when `text` does not extend it (a tokenizer whose
  // decoding is not prefix-stable), past their common prefix cut back to a character boundary.
  std::string Suffix(const std::string& text) const;

  const Tokenizer& tokenizer_;
  const bool skip_special_tokens_;
  bool byte_runs_fuse_ = false;  // Decode judges a run of byte pieces as a whole
  // Recent ids; everything before prefix_ has been dropped from the front as it became useless.
  std::vector<int32_t> ids_;
  size_t prefix_ = 0;        // start of the decode window
  size_t read_ = 0;          // ids before this are emitted
  std::string prefix_text_;  // Decode(ids_[prefix_:read_])
  size_t num_tokens_ = 0;
  size_t dropped_ids_ = 0;
};

}  // namespace tandem::tokenizer
