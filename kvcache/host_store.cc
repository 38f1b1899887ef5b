#include "kvcache/host_store.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "common/status_macros.h"

namespace tandem::kvcache {
namespace {

constexpr size_t kPage = 4096;

class Aligned final : public HostAllocator {
 public:
  StatusOr<void*> Allocate(size_t bytes) override {
    void* p = std::aligned_alloc(kPage, (bytes + kPage - 1) / kPage * kPage);
    if (p == nullptr) {
      return ResourceExhaustedError("host kv tier: cannot allocate " + std::to_string(bytes) +
                                    " bytes");
    }
    return p;
  }
  void Free(void* p, size_t) override { std::free(p); }
};

}  // namespace

HostAllocator& AlignedHostAllocator() {
  static Aligned* allocator = new Aligned();
  return *allocator;
}

StatusOr<std::unique_ptr<HostStore>> HostStore::Create(HostStoreOptions options,
                                                       HostAllocator* allocator,
                                                       const Clock* clock, KvEventSink* events) {
  if (options.block_bytes == 0 || options.capacity_blocks <= 0) {
    return InvalidArgumentError("host kv tier: block_bytes and capacity_blocks must be positive");
  }
  if (allocator == nullptr) allocator = &AlignedHostAllocator();
  TANDEM_ASSIGN_OR_RETURN(
      void* memory,
      allocator->Allocate(options.block_bytes * static_cast<size_t>(options.capacity_blocks)));
  return std::unique_ptr<HostStore>(new HostStore(options, allocator,
                                                  static_cast<std::byte*>(memory),
                                                  clock != nullptr ? *clock : SystemClock(),
                                                  events));
}

HostStore::HostStore(HostStoreOptions options, HostAllocator* allocator, std::byte* memory,
                     const Clock& clock, KvEventSink* events)
    : SlotStore(options.capacity_blocks, clock, events),
      options_(options),
      allocator_(allocator),
      memory_(memory),
      parents_(static_cast<size_t>(options.capacity_blocks)) {}

HostStore::~HostStore() {
  allocator_->Free(memory_, options_.block_bytes * static_cast<size_t>(options_.capacity_blocks));
}

std::byte* HostStore::BeginPut(BlockHash hash, bool* full) {
  std::lock_guard lock(mu_);
  if (full != nullptr) *full = false;
  if (const std::optional<int> slot = index_.Find(hash)) {
    index_.Touch(*slot);
    return nullptr;
  }
  if (pending_.contains(hash)) return nullptr;
  std::optional<BlockHash> evicted;
  const std::optional<int> acquired = index_.Acquire(&evicted);
  if (!acquired.has_value()) {
    if (full != nullptr) *full = true;
    return nullptr;
  }
  const int slot = *acquired;
  if (evicted.has_value()) {
    ++stats_.evicted;
    if (evict_hook_) {
      evict_hook_(*evicted, parents_[static_cast<size_t>(slot)],
                  {slot_data(slot), options_.block_bytes});
    }
    ReportRemoved({&*evicted, 1});
  }
  pending_[hash] = slot;
  return slot_data(slot);
}

void HostStore::CommitPut(BlockHash hash, std::optional<BlockHash> parent) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(hash);
  TANDEM_CHECK(it != pending_.end());
  const int slot = it->second;
  pending_.erase(it);
  parents_[static_cast<size_t>(slot)] = parent;
  index_.Publish(slot, hash);
  ++stats_.stored;
  stats_.bytes_in += options_.block_bytes;
  ReportStored(hash, parent);
}

void HostStore::AbortPut(BlockHash hash) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(hash);
  TANDEM_CHECK(it != pending_.end());
  index_.Abandon(it->second);
  pending_.erase(it);
}

StatusOr<PutResult> HostStore::Put(BlockHash hash, std::optional<BlockHash> parent,
                                   std::span<const std::byte> data) {
  if (data.size() != options_.block_bytes) {
    return InvalidArgumentError("host kv tier: block of " + std::to_string(data.size()) +
                                " bytes, expected " + std::to_string(options_.block_bytes));
  }
  bool full = false;
  std::byte* slot = BeginPut(hash, &full);
  if (full) {
    return ResourceExhaustedError("host kv tier: every slot is being written by a put in flight");
  }
  if (slot == nullptr) return PutResult::kPresent;
  std::memcpy(slot, data.data(), data.size());
  CommitPut(hash, parent);
  return PutResult::kStored;
}

Status HostStore::Get(BlockHash hash, std::span<std::byte> out) {
  if (out.size() != options_.block_bytes) {
    return InvalidArgumentError("host kv tier: buffer of " + std::to_string(out.size()) +
                                " bytes, expected " + std::to_string(options_.block_bytes));
  }
  std::lock_guard lock(mu_);
  const std::optional<int> slot = index_.Find(hash);
  if (!slot.has_value()) {
    ++stats_.misses;
    return NotFoundError("host kv tier: block not held");
  }
  std::memcpy(out.data(), slot_data(*slot), out.size());
  index_.Touch(*slot);
  ++stats_.hits;
  stats_.bytes_out += out.size();
  return OkStatus();
}

const std::byte* HostStore::Find(BlockHash hash) {
  std::lock_guard lock(mu_);
  const std::optional<int> slot = index_.Find(hash);
  if (!slot.has_value()) {
    ++stats_.misses;
    return nullptr;
  }
  index_.Touch(*slot);
  ++stats_.hits;
  stats_.bytes_out += options_.block_bytes;
  return slot_data(*slot);
}

}  // namespace tandem::kvcache
