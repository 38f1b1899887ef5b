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

KvLayout FromProto(const v1::KvLayout& in) {
  return KvLayout{.num_layers = in.num_layers(),
                  .num_kv_heads = in.num_kv_heads(),
                  .head_dim = in.head_dim(),
                  .block_size = in.block_size(),
                  .element_bytes = in.element_bytes()};
}

KvSource FromProto(const v1::KvSource& in) {
  const v1::KvHandle& h = in.handle();
  KvSource out;
  out.peer = in.peer();
  out.transfer_backend = h.transfer_backend();
  out.transfer_descriptor = h.transfer_descriptor();
  out.layout = FromProto(h.kv_layout());
  out.handle.lease_id = h.lease_id();
  out.handle.block_ids.assign(h.block_ids().begin(), h.block_ids().end());
  out.handle.num_tokens = h.num_tokens();
  out.handle.expires_in_ms = h.expires_in_ms();
  return out;
}

}  // namespace tandem::worker
