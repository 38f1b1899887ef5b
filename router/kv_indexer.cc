#include "router/kv_indexer.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <utility>

namespace tandem::router {
namespace {

uint8_t TierBit(KvTier tier) { return static_cast<uint8_t>(1u << (static_cast<int>(tier) - 1)); }

// How far ahead of the walk slots are prefetched: enough lookups in flight to hide a miss to
// memory, few enough that a short match wastes little.
constexpr size_t kPrefetchAhead = 12;
constexpr size_t kInitialSlots = 1024;
// Linear probing stays short below this load.
constexpr double kMaxLoad = 0.6;

constexpr size_t kHugePage = size_t{2} << 20;

}  // namespace

KvIndexer::SlotArray::SlotArray(size_t n) : count(n) {
  const size_t bytes = n * sizeof(Slot);
  const size_t align = bytes >= kHugePage ? kHugePage : alignof(std::max_align_t) * 4;
  const size_t rounded = (bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (p == nullptr) throw std::bad_alloc();
  if (bytes >= kHugePage) madvise(p, rounded, MADV_HUGEPAGE);  // A hint: fine if refused.
  std::memset(p, 0, rounded);
  data = static_cast<Slot*>(p);
}

KvIndexer::SlotArray::~SlotArray() { std::free(data); }

KvIndexer::SlotArray::SlotArray(SlotArray&& other) noexcept
    : data(std::exchange(other.data, nullptr)), count(std::exchange(other.count, 0)) {}

KvIndexer::SlotArray& KvIndexer::SlotArray::operator=(SlotArray&& other) noexcept {
  std::swap(data, other.data);
  std::swap(count, other.count);
  return *this;
}

KvIndexer::KvIndexer()
    : slots_(kInitialSlots),
      multiplier_((std::random_device{}() * uint64_t{0x9E3779B97F4A7C15}) | 1),
      shift_(64 - std::countr_zero(kInitialSlots)) {}

size_t KvIndexer::Find(BlockHash key) const {
  if (key == 0) return SIZE_MAX;
  const size_t mask = slots_.size() - 1;
  for (size_t i = Home(key);; i = (i + 1) & mask) {
    const BlockHash k = slots_[i].key;
    if (k == key) return i;
    if (k == 0) return SIZE_MAX;
  }
}

size_t KvIndexer::FindOrInsert(BlockHash key) {
  if (static_cast<double>(size_ + 1) > kMaxLoad * static_cast<double>(slots_.size())) Grow();
  const size_t mask = slots_.size() - 1;
  for (size_t i = Home(key);; i = (i + 1) & mask) {
    if (slots_[i].key == key) return i;
    if (slots_[i].key == 0) {
      slots_[i].key = key;
      ++size_;
      return i;
    }
  }
}

void KvIndexer::Grow() {
  SlotArray old(slots_.size() * 2);
  std::swap(old, slots_);
  shift_ -= 1;
  const size_t mask = slots_.size() - 1;
  for (size_t k = 0; k < old.size(); ++k) {
    const Slot& s = old[k];
    if (s.key == 0) continue;
    size_t i = Home(s.key);
    while (slots_[i].key != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

void KvIndexer::EraseSlot(size_t i) {
  const size_t mask = slots_.size() - 1;
  size_t hole = i;
  for (size_t j = (i + 1) & mask; slots_[j].key != 0; j = (j + 1) & mask) {
    // Slot j may move back into the hole unless its home lies cyclically in (hole, j].
    const size_t home = Home(slots_[j].key);
    const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    slots_[hole] = slots_[j];
    hole = j;
  }
  slots_[hole] = Slot{};
  --size_;
}

bool KvIndexer::SlotEmptyOfHolders(const Slot& s) const {
  if (s.overflow != 0) return false;
  return std::all_of(std::begin(s.tiers), std::end(s.tiers), [](uint8_t t) { return t == 0; });
}

bool KvIndexer::AddHolder(size_t i, WorkerSlot worker, uint8_t bit) {
  Slot& s = slots_[i];
  int free_inline = -1;
  for (int k = 0; k < kInline; ++k) {
    if (s.tiers[k] == 0) {
      if (free_inline < 0) free_inline = k;
    } else if (s.workers[k] == worker) {
      s.tiers[k] |= bit;
      return false;
    }
  }
  if (s.overflow != 0) {
    for (Holder& h : overflow_[s.overflow - 1]) {
      if (h.worker == worker) {
        h.tiers |= bit;
        return false;
      }
    }
  }
  if (free_inline >= 0) {
    s.workers[free_inline] = worker;
    s.tiers[free_inline] = bit;
    return true;
  }
  if (s.overflow == 0) {
    if (free_overflow_.empty()) {
      overflow_.emplace_back();
      s.overflow = static_cast<uint32_t>(overflow_.size());
    } else {
      s.overflow = free_overflow_.back() + 1;
      free_overflow_.pop_back();
    }
  }
  overflow_[s.overflow - 1].push_back(Holder{worker, bit});
  return true;
}

bool KvIndexer::RemoveHolder(size_t i, WorkerSlot worker, uint8_t bits) {
  Slot& s = slots_[i];
  bool gone = false;
  bool found = false;
  for (int k = 0; k < kInline && !found; ++k) {
    if (s.tiers[k] == 0 || s.workers[k] != worker) continue;
    found = true;
    s.tiers[k] &= static_cast<uint8_t>(~bits);
    gone = s.tiers[k] == 0;
  }
  if (!found && s.overflow != 0) {
    std::vector<Holder>& more = overflow_[s.overflow - 1];
    for (size_t k = 0; k < more.size() && !found; ++k) {
      if (more[k].worker != worker) continue;
      found = true;
      more[k].tiers &= static_cast<uint8_t>(~bits);
      gone = more[k].tiers == 0;
      if (!gone) break;
      more[k] = more.back();
      more.pop_back();
    }
    if (more.empty()) {
      free_overflow_.push_back(s.overflow - 1);
      s.overflow = 0;
    }
  }
  if (gone && SlotEmptyOfHolders(s)) EraseSlot(i);
  return gone;
}

void KvIndexer::CountBlocks(WorkerSlot worker, int delta) {
  if (worker >= worker_blocks_.size()) worker_blocks_.resize(worker + 1, 0);
  worker_blocks_[worker] += delta;
  entries_ += delta;
}

size_t KvIndexer::worker_blocks(WorkerSlot worker) const {
  return worker < worker_blocks_.size() ? worker_blocks_[worker] : 0;
}

void KvIndexer::Stored(WorkerSlot worker, KvTier tier, std::span<const BlockHash> hashes) {
  const uint8_t bit = TierBit(tier);
  for (BlockHash hash : hashes) {
    if (hash == 0) continue;
    if (AddHolder(FindOrInsert(hash), worker, bit)) CountBlocks(worker, +1);
  }
}

void KvIndexer::Removed(WorkerSlot worker, KvTier tier, std::span<const BlockHash> hashes) {
  const uint8_t bit = TierBit(tier);
  for (BlockHash hash : hashes) {
    const size_t i = Find(hash);
    if (i == SIZE_MAX) continue;
    if (RemoveHolder(i, worker, bit)) CountBlocks(worker, -1);
  }
}

void KvIndexer::RemoveWorker(WorkerSlot worker) {
  if (worker_blocks(worker) == 0) return;
  // An erase shifts later slots back into the one just looked at: look at it again. Slots only
  // move towards the scan position (or wrap from the front to the back), so none is missed.
  for (size_t i = 0; i < slots_.size();) {
    if (slots_[i].key == 0) {
      ++i;
      continue;
    }
    const BlockHash before = slots_[i].key;
    if (RemoveHolder(i, worker, 0xff)) CountBlocks(worker, -1);
    if (slots_[i].key == before) ++i;
  }
}

void KvIndexer::FindMatches(std::span<const BlockHash> hashes,
                            std::vector<PrefixMatch>* out) const {
  const size_t base = out->size();
  const size_t n = hashes.size();
  for (size_t i = 0; i < std::min(kPrefetchAhead, n); ++i) {
    __builtin_prefetch(&slots_[Home(hashes[i])]);
  }
  // Extends `worker`'s match by one block at depth `depth` when it held every block before.
  auto extend = [&](uint32_t depth, WorkerSlot worker, uint8_t tiers)
      __attribute__((always_inline)) {
    if (depth == 0) {
      if (worker >= scratch_.size()) scratch_.resize(worker + 1);
      out->push_back(PrefixMatch{.worker = worker});
      scratch_[worker] = Progress{1, static_cast<uint32_t>(out->size() - 1)};
    } else {
      if (worker >= scratch_.size()) return false;
      Progress& p = scratch_[worker];
      if (p.depth != depth) return false;  // Not a holder of every block so far.
      p.depth = depth + 1;
    }
    PrefixMatch& match = (*out)[scratch_[worker].index];
    if (tiers & TierBit(KvTier::kDevice)) {
      ++match.device_blocks;
    } else if (tiers & TierBit(KvTier::kHost)) {
      ++match.host_blocks;
    } else {
      ++match.disk_blocks;
    }
    return true;
  };
  for (size_t i = 0; i < n; ++i) {
    if (i + kPrefetchAhead < n) __builtin_prefetch(&slots_[Home(hashes[i + kPrefetchAhead])]);
    const size_t at = Find(hashes[i]);
    if (at == SIZE_MAX) break;
    const Slot& s = slots_[at];
    const auto depth = static_cast<uint32_t>(i);
    bool extended = false;
    for (int k = 0; k < kInline; ++k) {
      if (s.tiers[k] != 0) extended |= extend(depth, s.workers[k], s.tiers[k]);
    }
    if (s.overflow != 0) {
      for (const Holder& h : overflow_[s.overflow - 1])
        extended |= extend(depth, h.worker, h.tiers);
    }
    if (!extended) break;
  }
  for (size_t k = base; k < out->size(); ++k) scratch_[(*out)[k].worker] = Progress{};
}

}  // namespace tandem::router
