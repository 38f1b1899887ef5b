// The KV block layout shared by every tier and every transfer (ARCHITECTURE §3).
//
// A block is one contiguous region holding all layers' K and V for block_size tokens:
//   [layer][K|V][block_size][kv_heads][head_dim]
// so one block is one transfer descriptor and one disk write. Kernels address a layer's K or V
// inside a block through LayerOffset().
//
// Thread safety: value type.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem {

struct KvLayout {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  int element_bytes = 4;  // 4 for the fp32 CPU backend, 2 for bf16.

  // Elements of one token's K (or V) in one layer.
  int64_t TokenElements() const { return int64_t{num_kv_heads} * head_dim; }
  // Elements of K (or V) of one layer in one block.
  int64_t PlaneElements() const { return TokenElements() * block_size; }
  // Elements of one whole block (all layers, K and V).
  int64_t BlockElements() const { return PlaneElements() * 2 * num_layers; }
  size_t BlockBytes() const { return static_cast<size_t>(BlockElements()) * element_bytes; }
  // Element offset of layer `layer`'s K (kv = 0) or V (kv = 1) plane inside a block.
  int64_t LayerOffset(int layer, int kv) const {
    return (int64_t{layer} * 2 + kv) * PlaneElements();
  }

  friend bool operator==(const KvLayout&, const KvLayout&) = default;
};

}  // namespace tandem
