#include "tandem/block_hash.h"

#include <xxhash.h>

#include <bit>
#include <cstring>
#include <string>

namespace tandem {
namespace {

// The contract fixes little-endian encodings; write bytes explicitly so the hash is the same on
// any host.
void PutLeU32(uint32_t v, unsigned char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}
void PutLeU64(uint64_t v, unsigned char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}

}  // namespace

uint64_t BlockHashSeed(std::string_view model_identity, std::string_view salt) {
  if (salt.empty()) return XXH3_64bits(model_identity.data(), model_identity.size());
  std::string key(model_identity);
  key.push_back('\0');
  key.append(salt);
  return XXH3_64bits(key.data(), key.size());
}

BlockHash HashBlock(std::optional<BlockHash> parent, std::span<const int32_t> block_tokens,
                    uint64_t seed) {
  // Small blocks fit on the stack; the buffer is parent (8 bytes) + 4 bytes per token.
  unsigned char stack_buf[8 + 4 * 64];
  std::string heap_buf;
  const size_t bytes = (parent ? 8 : 0) + 4 * block_tokens.size();
  unsigned char* buf = stack_buf;
  if (bytes > sizeof(stack_buf)) {
    heap_buf.resize(bytes);
    buf = reinterpret_cast<unsigned char*>(heap_buf.data());
  }
  size_t pos = 0;
  if (parent) {
    PutLeU64(*parent, buf);
    pos = 8;
  }
  for (int32_t t : block_tokens) {
    PutLeU32(static_cast<uint32_t>(t), buf + pos);
    pos += 4;
  }
  return XXH3_64bits_withSeed(buf, bytes, seed);
}

std::vector<BlockHash> HashBlocks(std::span<const int32_t> tokens, int block_size, uint64_t seed,
                                  std::optional<BlockHash> parent) {
  std::vector<BlockHash> hashes;
  const size_t full = tokens.size() / static_cast<size_t>(block_size);
  hashes.reserve(full);
  if constexpr (std::endian::native != std::endian::little) {
    for (size_t i = 0; i < full; ++i) {
      parent = HashBlock(parent, tokens.subspan(i * block_size, block_size), seed);
      hashes.push_back(*parent);
    }
    return hashes;
  }
  // On a little-endian host the encodings are the in-memory bytes: one buffer, parent then
  // tokens, copied whole (the frontend hashes every prompt; this is on its path).
  const size_t token_bytes = 4 * static_cast<size_t>(block_size);
  std::vector<unsigned char> buf(8 + token_bytes);
  for (size_t i = 0; i < full; ++i) {
    size_t pos = 0;
    if (parent) {
      std::memcpy(buf.data(), &*parent, 8);
      pos = 8;
    }
    std::memcpy(buf.data() + pos, tokens.data() + i * block_size, token_bytes);
    parent = XXH3_64bits_withSeed(buf.data(), pos + token_bytes, seed);
    hashes.push_back(*parent);
  }
  return hashes;
}

}  // namespace tandem
