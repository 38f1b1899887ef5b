// The token ids `tandem bench` puts in prompts: deterministic from a seed, inside the served
// model's vocabulary and above its low ids (where special tokens live).
//
// A prompt is a function of (seed, what it is made of): a Mooncake hash id names a block of
// block_size tokens, so equal ids give identical blocks in every request (shared prefixes reach
// the server as shared prefixes) and different ids give different blocks; the rest of a prompt
// draws from a stream unique to its request.
//
// Thread safety: value type; pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "cli/bench/dataset.h"

namespace tandem::bench {

class TokenSpace {
 public:
  // Ids are drawn from [min(1000, vocab_size / 4), vocab_size). vocab_size must be >= 2.
  TokenSpace(int32_t vocab_size, uint64_t seed);

  int32_t low() const { return low_; }
  int32_t vocab_size() const { return vocab_size_; }

  // Token `position` of the block that hash id `hash_id` names.
  int32_t BlockToken(int64_t hash_id, uint64_t position) const;
  // Token `position` of request `request_index`'s own tokens (random prompts, and what follows a
  // Mooncake request's blocks when input_length is longer than they are).
  int32_t RequestToken(uint64_t request_index, uint64_t position) const;

  // The prompt of request `request_index`: its blocks (mooncake, `block_size` tokens each)
  // truncated to spec.input_len, then its own tokens up to spec.input_len.
  void AppendPrompt(const RequestSpec& spec, uint64_t request_index, int block_size,
                    std::vector<int32_t>* out) const;

 private:
  uint64_t BlockStream(int64_t hash_id) const;
  uint64_t RequestStream(uint64_t request_index) const;
  int32_t TokenAt(uint64_t stream, uint64_t position) const;

  int32_t vocab_size_;
  int32_t low_;
  uint64_t seed_;
};

}  // namespace tandem::bench
