#include "kvcache/kv_tiers.h"

#include <utility>

#include "common/status_macros.h"

namespace tandem::kvcache {

KvTiers::KvTiers(BlockMover* mover) : mover_(mover), staging_(mover->block_bytes()) {}

StatusOr<std::unique_ptr<KvTiers>> KvTiers::Create(const KvTiersOptions& options,
                                                   BlockMover* mover, HostAllocator* allocator,
                                                   const Clock* clock, KvEventSink* events) {
  if (options.host_blocks <= 0 && options.disk_blocks <= 0) return std::unique_ptr<KvTiers>();
  TANDEM_CHECK(mover != nullptr);
  std::unique_ptr<KvTiers> tiers(new KvTiers(mover));
  const size_t block_bytes = mover->block_bytes();
  if (options.host_blocks > 0) {
    TANDEM_ASSIGN_OR_RETURN(
        tiers->host_,
        HostStore::Create({.block_bytes = block_bytes, .capacity_blocks = options.host_blocks},
                          allocator, clock, events));
  }
  if (options.disk_blocks > 0) {
    if (options.disk_path.empty()) {
      return InvalidArgumentError("kv tiers: a disk tier needs a path");
    }
    TANDEM_ASSIGN_OR_RETURN(
        tiers->disk_, DiskStore::Create({.path = options.disk_path,
                                         .block_bytes = block_bytes,
                                         .capacity_blocks = options.disk_blocks,
                                         .queue_depth = options.disk_queue_depth,
                                         .admit_after_reuses = options.disk_admit_after_reuses},
                                        clock, events));
  }
  if (tiers->host_ != nullptr && tiers->disk_ != nullptr) {
    KvTiers* self = tiers.get();
    tiers->host_->set_evict_hook([self](BlockHash hash, std::optional<BlockHash> parent,
                                        std::span<const std::byte> data) {
      auto put = self->disk_->Put(hash, parent, data);
      if (put.ok() && *put == PutResult::kStored) ++self->counts_.spilled;
    });
  }
  return tiers;
}

int KvTiers::CountPrefix(std::span<const BlockHash> hashes) const {
  int n = 0;
  for (BlockHash h : hashes) {
    const bool held = (host_ != nullptr && host_->Contains(h)) ||
                      (disk_ != nullptr && disk_->Contains(h));
    if (!held) break;
    ++n;
  }
  return n;
}

int KvTiers::Onboard(std::span<const BlockHash> hashes, std::span<const BlockId> blocks) {
  TANDEM_CHECK(hashes.size() == blocks.size());
  int loaded = 0;
  for (size_t i = 0; i < hashes.size(); ++i) {
    bool from_host = false;
    if (host_ != nullptr && host_->Get(hashes[i], staging_).ok()) {
      from_host = true;
    } else if (disk_ == nullptr || !disk_->Get(hashes[i], staging_).ok()) {
      break;
    }
    if (!mover_->CopyIn(blocks[i], staging_).ok()) break;
    ++(from_host ? counts_.onboarded_host : counts_.onboarded_disk);
    ++loaded;
  }
  return loaded;
}

Status KvTiers::Offload(BlockHash hash, std::optional<BlockHash> parent, BlockId block) {
  if (host_ == nullptr) {
    // No host tier: the disk tier takes G1's blocks directly (when it admits them).
    if (disk_ == nullptr || disk_->Contains(hash)) return OkStatus();
    TANDEM_RETURN_IF_ERROR(mover_->CopyOut(block, staging_));
    return disk_->Put(hash, parent, staging_).status();
  }
  if (host_->Contains(hash)) {
    return host_->Put(hash, parent, staging_).status();  // kPresent: refreshes, copies nothing
  }
  TANDEM_RETURN_IF_ERROR(mover_->CopyOut(block, staging_));
  TANDEM_ASSIGN_OR_RETURN(const PutResult result, host_->Put(hash, parent, staging_));
  if (result == PutResult::kStored) ++counts_.offloaded;
  return OkStatus();
}

void KvTiers::NoteReuse(std::span<const BlockHash> hashes) {
  if (disk_ == nullptr) return;
  for (BlockHash h : hashes) disk_->NoteReuse(h);
}

KvTiersStats KvTiers::stats() const {
  KvTiersStats s = counts_;
  if (host_ != nullptr) s.host = host_->stats();
  if (disk_ != nullptr) s.disk = disk_->stats();
  return s;
}

}  // namespace tandem::kvcache
