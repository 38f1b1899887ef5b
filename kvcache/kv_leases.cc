#include "kvcache/kv_leases.h"

#include <algorithm>
#include <string>

namespace tandem::kvcache {

KvLeases::KvLeases(BlockPool* pool, const Clock* clock, std::chrono::nanoseconds ttl, uint64_t seed)
    : pool_(pool), clock_(clock), ttl_(ttl), rng_(seed != 0 ? seed : std::random_device{}()) {}

KvLeases::~KvLeases() {
  for (auto& [id, lease] : leases_) pool_->Release(lease.blocks);
}

const KvLease& KvLeases::Grant(std::span<const BlockId> blocks, int num_tokens) {
  uint64_t id = 0;
  while (id == 0 || leases_.contains(id)) id = rng_();
  pool_->Retain(blocks);
  KvLease lease{.id = id,
                .blocks = {blocks.begin(), blocks.end()},
                .num_tokens = num_tokens,
                .expires_ns = clock_->NowNanos() + ttl_.count()};
  return leases_.emplace(id, std::move(lease)).first->second;
}

Status KvLeases::Release(uint64_t lease_id) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) {
    return NotFoundError("KV lease " + std::to_string(lease_id) +
                         " is unknown (released, expired, or never granted here)");
  }
  pool_->Release(it->second.blocks);
  leases_.erase(it);
  return OkStatus();
}

StatusOr<const KvLease*> KvLeases::Check(uint64_t lease_id, std::span<const BlockId> blocks) const {
  auto it = leases_.find(lease_id);
  if (it == leases_.end() || it->second.expires_ns <= clock_->NowNanos()) {
    return NotFoundError("KV lease " + std::to_string(lease_id) + " is unknown or expired");
  }
  // A run of the lease's blocks, in its order (what a pull of the blocks after a cached prefix
  // reads): anything else was not read from this lease's KV.
  const std::vector<BlockId>& held = it->second.blocks;
  if (blocks.empty()) return &it->second;
  auto first = std::find(held.begin(), held.end(), blocks[0]);
  if (first == held.end() || static_cast<size_t>(held.end() - first) < blocks.size() ||
      !std::equal(blocks.begin(), blocks.end(), first)) {
    return InvalidArgumentError("the blocks are not a run of KV lease " + std::to_string(lease_id) +
                                "'s blocks");
  }
  return &it->second;
}

int KvLeases::ExpireDue() {
  const int64_t now = clock_->NowNanos();
  int n = 0;
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.expires_ns > now) {
      ++it;
      continue;
    }
    pool_->Release(it->second.blocks);
    it = leases_.erase(it);
    ++n;
  }
  expired_ += n;
  return n;
}

std::optional<int64_t> KvLeases::next_expiry_ns() const {
  std::optional<int64_t> next;
  for (const auto& [id, lease] : leases_) {
    if (!next || lease.expires_ns < *next) next = lease.expires_ns;
  }
  return next;
}

}  // namespace tandem::kvcache
