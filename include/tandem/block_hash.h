// The chained block hash of ARCHITECTURE §3, the one implementation used by the engine, the KV
// cache, the router and the tests:
//
//   h[0] = xxh3_64(le_u32(tokens[0..B)), seed)
//   h[i] = xxh3_64(le_u64(h[i-1]) ‖ le_u32(tokens of block i), seed)
//
// with seed = xxh3_64 of the model identity (plus the LoRA name or cache_salt when given). Only
// full blocks are hashed.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace tandem {

using BlockHash = uint64_t;

// xxh3_64 of `model_identity`, or of `model_identity` + '\0' + `salt` when salt is non-empty.
uint64_t BlockHashSeed(std::string_view model_identity, std::string_view salt = {});

// Hash of one full block given its parent's hash (nullopt for the first block of a sequence).
BlockHash HashBlock(std::optional<BlockHash> parent, std::span<const int32_t> block_tokens,
                    uint64_t seed);

// Hashes of every full block of `tokens` (tokens.size() / block_size of them), chained from
// `parent` when the tokens continue an already hashed prefix.
std::vector<BlockHash> HashBlocks(std::span<const int32_t> tokens, int block_size, uint64_t seed,
                                  std::optional<BlockHash> parent = std::nullopt);

}  // namespace tandem
