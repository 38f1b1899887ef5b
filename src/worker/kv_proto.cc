#include "worker/kv_proto.h"

namespace tandem::worker {

void ToProto(const KvLayout& layout, v1::KvLayout* out) {
  out->set_num_layers(layout.num_layers);
  out->set_num_kv_heads(layout.num_kv_heads);
  out->set_head_dim(layout.head_dim);
  out->set_block_size(layout.block_size);
  out->set_element_bytes(layout.element_bytes);
}

void ToProto(const KvHandle& handle, const KvLayout& layout, v1::KvHandle* out) {
  out->set_lease_id(handle.lease_id);
  out->mutable_block_ids()->Add(handle.block_ids.begin(), handle.block_ids.end());
  out->set_num_tokens(handle.num_tokens);
  out->set_expires_in_ms(handle.expires_in_ms);
  ToProto(layout, out->mutable_kv_layout());
}

}  // namespace tandem::worker
