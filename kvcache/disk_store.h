// G3: whole KV blocks by hash in one preallocated file per worker (O_DIRECT, io_uring), LRU when
// full. A slot is a 4 KiB-aligned span: a 64-byte header (magic, hash, parent, size, checksums)
// and the block. Every read verifies the header and the block's xxh3 checksum; a slot that fails
// is dropped and reads as a miss, never as data.
//
// Admission: only blocks reused at least `admit_after_reuses` times (NoteReuse: a prefix hit on
// any tier) are written, so one-off prompts do not wear the disk. The counts are forgotten when
// they outgrow 8 × capacity entries.
//
// Errors: an I/O error or a full disk disables the store: one log line, stats().disabled and
// errors, Removed events for what it held; from then on Put answers kDisabled and Get misses.
// Serving goes on from the other tiers. A new store (a restart) starts empty: the file's old
// contents are never trusted.
//
// Thread safety: thread-safe (BlockStore); I/O runs under the store's mutex.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kvcache/block_store.h"
#include "kvcache/clock.h"
#include "kvcache/disk_io.h"
#include "kvcache/slot_index.h"

namespace tandem::kvcache {

struct DiskStoreOptions {
  std::string path;  // the worker's file; created (or truncated) and preallocated
  size_t block_bytes = 0;
  int capacity_blocks = 0;
  int queue_depth = 64;        // io_uring entries: operations of a batch in flight together
  int admit_after_reuses = 1;  // 0: every Put is written
};

class DiskStore final : public SlotStore {
 public:
  // The file from OpenDiskFile unless `io` is given (tests wrap it to inject failures).
  // The clock and the sink (null: no events) must outlive the store.
  static StatusOr<std::unique_ptr<DiskStore>> Create(DiskStoreOptions options,
                                                     const Clock* clock = nullptr,
                                                     KvEventSink* events = nullptr,
                                                     std::unique_ptr<DiskIo> io = nullptr);
  ~DiskStore() override;

  // Bytes of one slot, and where slot i starts in the file.
  static size_t SlotBytes(size_t block_bytes);
  size_t slot_bytes() const { return slot_bytes_; }

  KvTier tier() const override { return KvTier::kDisk; }
  size_t block_bytes() const override { return options_.block_bytes; }
  int capacity() const override { return options_.capacity_blocks; }
  StatusOr<PutResult> Put(BlockHash hash, std::optional<BlockHash> parent,
                          std::span<const std::byte> data) override;
  Status Get(BlockHash hash, std::span<std::byte> out) override;

  // Several blocks in one batch of reads (in flight together): one status per hash, as Get.
  std::vector<Status> GetMany(std::span<const BlockHash> hashes,
                              std::span<const std::span<std::byte>> outs);

  // A prefix hit on `hash` somewhere: one more reuse toward admission.
  void NoteReuse(BlockHash hash);

  // The slot holding `hash` (tests: to corrupt it on purpose); -1 when absent.
  int SlotOf(BlockHash hash) const;

 private:
  DiskStore(DiskStoreOptions options, std::unique_ptr<DiskIo> io, std::byte* bounce,
            int bounce_slots, const Clock& clock, KvEventSink* events);
  // With mu_ held.
  void Disable(const std::string& why);
  bool Verify(const std::byte* slot, BlockHash hash) const;

  const DiskStoreOptions options_;
  const size_t slot_bytes_;
  std::unique_ptr<DiskIo> io_;
  std::byte* const bounce_;  // bounce_slots_ aligned slot buffers for O_DIRECT
  const int bounce_slots_;
  std::unordered_map<BlockHash, uint32_t> reuses_;
};

}  // namespace tandem::kvcache
