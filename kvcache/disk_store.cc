#include "kvcache/disk_store.h"

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/logging.h"
#include "common/status_macros.h"

namespace tandem::kvcache {
namespace {

constexpr size_t kAlign = 4096;
constexpr size_t kHeaderBytes = 64;
constexpr uint64_t kMagic = 0x31305654'4D444E54ull;  // "TNDMTV01", little-endian
constexpr int kMaxBounceSlots = 16;

// The header at the start of a slot. header_checksum covers the fields before it.
struct SlotHeader {
  uint64_t magic;
  uint64_t hash;
  uint64_t parent;
  uint32_t has_parent;
  uint32_t data_bytes;
  uint64_t data_checksum;
  uint64_t header_checksum;
  uint8_t reserved[kHeaderBytes - 48];
};
static_assert(sizeof(SlotHeader) == kHeaderBytes);
constexpr size_t kHeaderChecked = offsetof(SlotHeader, header_checksum);

uint64_t Checksum(const void* p, size_t n) { return XXH3_64bits(p, n); }

std::string ErrnoText(int64_t result) { return std::strerror(static_cast<int>(-result)); }

}  // namespace

size_t DiskStore::SlotBytes(size_t block_bytes) {
  return (kHeaderBytes + block_bytes + kAlign - 1) / kAlign * kAlign;
}

StatusOr<std::unique_ptr<DiskStore>> DiskStore::Create(DiskStoreOptions options,
                                                       const Clock* clock, KvEventSink* events,
                                                       std::unique_ptr<DiskIo> io) {
  if (options.block_bytes == 0 || options.capacity_blocks <= 0 || options.path.empty()) {
    return InvalidArgumentError(
        "disk kv tier: path, block_bytes and capacity_blocks must be given");
  }
  if (options.block_bytes > UINT32_MAX) {
    return InvalidArgumentError("disk kv tier: blocks over 4 GiB");
  }
  const size_t slot = SlotBytes(options.block_bytes);
  if (io == nullptr) {
    TANDEM_ASSIGN_OR_RETURN(
        io, OpenDiskFile(options.path, slot * static_cast<uint64_t>(options.capacity_blocks),
                          options.queue_depth));
  }
  const int bounce_slots = std::clamp(options.queue_depth, 1, kMaxBounceSlots);
  void* bounce = std::aligned_alloc(kAlign, slot * static_cast<size_t>(bounce_slots));
  if (bounce == nullptr) return ResourceExhaustedError("disk kv tier: bounce buffers");
  return std::unique_ptr<DiskStore>(new DiskStore(std::move(options), std::move(io),
                                                  static_cast<std::byte*>(bounce), bounce_slots,
                                                  clock != nullptr ? *clock : SystemClock(),
                                                  events));
}

DiskStore::DiskStore(DiskStoreOptions options, std::unique_ptr<DiskIo> io, std::byte* bounce,
                     int bounce_slots, const Clock& clock, KvEventSink* events)
    : SlotStore(options.capacity_blocks, clock, events),
      options_(std::move(options)),
      slot_bytes_(SlotBytes(options_.block_bytes)),
      io_(std::move(io)),
      bounce_(bounce),
      bounce_slots_(bounce_slots) {}

DiskStore::~DiskStore() { std::free(bounce_); }

int DiskStore::SlotOf(BlockHash hash) const {
  std::lock_guard lock(mu_);
  return index_.Find(hash).value_or(-1);
}

void DiskStore::NoteReuse(BlockHash hash) {
  std::lock_guard lock(mu_);
  if (reuses_.size() >= 8 * static_cast<size_t>(options_.capacity_blocks)) reuses_.clear();
  ++reuses_[hash];
}

void DiskStore::Disable(const std::string& why) {
  ++stats_.errors;
  if (stats_.disabled) return;
  stats_.disabled = true;
  spdlog::error("kvcache disk tier disabled path={} error={} blocks_dropped={}",
                Quoted(options_.path), Quoted(why), index_.size());
  ReportRemoved(index_.DropAll());
}

StatusOr<PutResult> DiskStore::Put(BlockHash hash, std::optional<BlockHash> parent,
                                   std::span<const std::byte> data) {
  if (data.size() != options_.block_bytes) {
    return InvalidArgumentError("disk kv tier: block of " + std::to_string(data.size()) +
                                " bytes, expected " + std::to_string(options_.block_bytes));
  }
  std::lock_guard lock(mu_);
  if (stats_.disabled) return PutResult::kDisabled;
  if (const std::optional<int> slot = index_.Find(hash)) {
    index_.Touch(*slot);
    return PutResult::kPresent;
  }
  if (options_.admit_after_reuses > 0) {
    auto it = reuses_.find(hash);
    if (it == reuses_.end() || it->second < static_cast<uint32_t>(options_.admit_after_reuses)) {
      return PutResult::kNotAdmitted;
    }
  }
  std::optional<BlockHash> evicted;
  const std::optional<int> acquired = index_.Acquire(&evicted);
  TANDEM_CHECK(acquired.has_value());  // puts hold the lock to the end: none is pending
  const int slot = *acquired;
  if (evicted.has_value()) {
    ++stats_.evicted;
    ReportRemoved({&*evicted, 1});
  }
  SlotHeader header{};
  header.magic = kMagic;
  header.hash = hash;
  header.parent = parent.value_or(0);
  header.has_parent = parent.has_value() ? 1 : 0;
  header.data_bytes = static_cast<uint32_t>(data.size());
  header.data_checksum = Checksum(data.data(), data.size());
  header.header_checksum = Checksum(&header, kHeaderChecked);
  std::memcpy(bounce_, &header, sizeof header);
  std::memcpy(bounce_ + kHeaderBytes, data.data(), data.size());
  std::memset(bounce_ + kHeaderBytes + data.size(), 0, slot_bytes_ - kHeaderBytes - data.size());
  const DiskIo::Op op{static_cast<uint64_t>(slot) * slot_bytes_, bounce_, slot_bytes_};
  const int64_t written = io_->Write({&op, 1})[0];
  if (written < 0) {
    index_.Abandon(slot);
    Disable("write: " + ErrnoText(written));
    return PutResult::kDisabled;
  }
  index_.Publish(slot, hash);
  ++stats_.stored;
  stats_.bytes_in += data.size();
  ReportStored(hash, parent);
  return PutResult::kStored;
}

bool DiskStore::Verify(const std::byte* slot, BlockHash hash) const {
  SlotHeader header;
  std::memcpy(&header, slot, sizeof header);
  return header.magic == kMagic && header.hash == hash &&
         header.header_checksum == Checksum(&header, kHeaderChecked) &&
         header.data_bytes == options_.block_bytes &&
         header.data_checksum == Checksum(slot + kHeaderBytes, options_.block_bytes);
}

Status DiskStore::Get(BlockHash hash, std::span<std::byte> out) {
  const std::span<std::byte> outs[1] = {out};
  return GetMany({&hash, 1}, outs)[0];
}

std::vector<Status> DiskStore::GetMany(std::span<const BlockHash> hashes,
                                       std::span<const std::span<std::byte>> outs) {
  TANDEM_CHECK(hashes.size() == outs.size());
  std::vector<Status> results(hashes.size(), OkStatus());
  std::lock_guard lock(mu_);
  // Batches of up to bounce_slots_ reads in flight together.
  for (size_t begin = 0; begin < hashes.size(); begin += static_cast<size_t>(bounce_slots_)) {
    const size_t end = std::min(hashes.size(), begin + static_cast<size_t>(bounce_slots_));
    std::vector<DiskIo::Op> ops;
    std::vector<size_t> which;  // ops[j] reads hashes[which[j]]
    for (size_t i = begin; i < end; ++i) {
      if (outs[i].size() != options_.block_bytes) {
        results[i] = InvalidArgumentError("disk kv tier: buffer of " +
                                          std::to_string(outs[i].size()) + " bytes, expected " +
                                          std::to_string(options_.block_bytes));
        continue;
      }
      const std::optional<int> slot = stats_.disabled ? std::nullopt : index_.Find(hashes[i]);
      if (!slot.has_value()) {
        ++stats_.misses;
        results[i] = NotFoundError("disk kv tier: block not held");
        continue;
      }
      ops.push_back({static_cast<uint64_t>(*slot) * slot_bytes_,
                     bounce_ + (i - begin) * slot_bytes_, slot_bytes_});
      which.push_back(i);
    }
    if (ops.empty()) continue;
    const std::vector<int64_t> read = io_->Read(ops);
    for (size_t j = 0; j < ops.size(); ++j) {
      const size_t i = which[j];
      if (stats_.disabled) {  // an earlier read of this batch failed
        ++stats_.misses;
        results[i] = NotFoundError("disk kv tier: disabled");
        continue;
      }
      if (read[j] < 0) {
        Disable("read: " + ErrnoText(read[j]));
        ++stats_.misses;
        results[i] = NotFoundError("disk kv tier: read failed");
        continue;
      }
      const auto* slot = static_cast<const std::byte*>(ops[j].buffer);
      if (!Verify(slot, hashes[i])) {
        // Wrong bytes are never returned: the slot is dropped and the block is a miss.
        spdlog::warn("kvcache disk tier slot failed verification hash={:016x}", hashes[i]);
        index_.Drop(hashes[i]);
        ReportRemoved({&hashes[i], 1});
        ++stats_.corrupt;
        ++stats_.misses;
        results[i] = NotFoundError("disk kv tier: block failed verification");
        continue;
      }
      std::memcpy(outs[i].data(), slot + kHeaderBytes, options_.block_bytes);
      if (const std::optional<int> s = index_.Find(hashes[i])) index_.Touch(*s);
      ++stats_.hits;
      stats_.bytes_out += options_.block_bytes;
    }
  }
  return results;
}

}  // namespace tandem::kvcache
