// The KV contract's types on the wire (proto/tandem/v1/worker.proto): the block layout and the
// KV handle of a prefill_only request.
//
// Thread safety: pure functions.
#pragma once

#include "tandem/engine.h"
#include "tandem/kv_layout.h"
#include "tandem/v1/worker.pb.h"

namespace tandem::worker {

void ToProto(const KvLayout& layout, v1::KvLayout* out);
// `layout`: the engine's, which the handle's blocks follow.
void ToProto(const KvHandle& handle, const KvLayout& layout, v1::KvHandle* out);

}  // namespace tandem::worker
