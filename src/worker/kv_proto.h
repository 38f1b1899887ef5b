// The KV contract's types on the wire (proto/tandem/v1/worker.proto): the block layout and the
// KV handle of a prefill_only request, and the KV source of a decode request.
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
KvLayout FromProto(const v1::KvLayout& in);
// As sent by a peer: the engine checks it (CheckKvSource) before anything is read.
KvSource FromProto(const v1::KvSource& in);

}  // namespace tandem::worker
