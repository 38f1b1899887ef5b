#include "cli/bench/token_space.h"

#include <algorithm>

namespace tandem::bench {
namespace {

// SplitMix64's finalizer: a bijection on 64 bits whose outputs pass as independent, so ids from
// different (stream, position) pairs are unrelated and never repeat in a pattern.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Streams of blocks and of requests never meet: the tag is mixed in before the id.
constexpr uint64_t kBlockTag = 0x626c6f636bull;  // "block"
constexpr uint64_t kRequestTag = 0x72657175ull;  // "requ"

}  // namespace

TokenSpace::TokenSpace(int32_t vocab_size, uint64_t seed)
    : vocab_size_(vocab_size), low_(std::min(1000, vocab_size / 4)), seed_(seed) {}

int32_t TokenSpace::TokenAt(uint64_t stream, uint64_t position) const {
  const uint64_t span = static_cast<uint64_t>(vocab_size_ - low_);
  return low_ + static_cast<int32_t>(Mix(stream ^ Mix(position)) % span);
}

uint64_t TokenSpace::BlockStream(int64_t hash_id) const {
  return Mix(seed_ ^ Mix(kBlockTag ^ Mix(static_cast<uint64_t>(hash_id))));
}

uint64_t TokenSpace::RequestStream(uint64_t request_index) const {
  return Mix(seed_ ^ Mix(kRequestTag ^ Mix(request_index)));
}

int32_t TokenSpace::BlockToken(int64_t hash_id, uint64_t position) const {
  return TokenAt(BlockStream(hash_id), position);
}

int32_t TokenSpace::RequestToken(uint64_t request_index, uint64_t position) const {
  return TokenAt(RequestStream(request_index), position);
}

void TokenSpace::AppendPrompt(const RequestSpec& spec, uint64_t request_index, int block_size,
                              std::vector<int32_t>* out) const {
  const size_t total = static_cast<size_t>(spec.input_len);
  size_t n = 0;
  for (int64_t id : spec.hash_ids) {
    const uint64_t stream = BlockStream(id);
    for (int i = 0; i < block_size && n < total; ++i, ++n) out->push_back(TokenAt(stream, i));
  }
  const uint64_t own = RequestStream(request_index);
  for (uint64_t i = 0; n < total; ++i, ++n) out->push_back(TokenAt(own, i));
}

}  // namespace tandem::bench
