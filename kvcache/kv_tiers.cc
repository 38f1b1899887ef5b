#include "kvcache/kv_tiers.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "common/status_macros.h"

namespace tandem::kvcache {

// G2's evictions on their way to G3: copied out of the evicted slot at once (the slot is reused
// right after), then written by a thread of its own, so that the engine never waits for the
// disk. At most `capacity` blocks wait; an eviction past that is not spilled (counted).
class KvTiers::Spiller {
 public:
  Spiller(DiskStore* disk, size_t block_bytes, int capacity)
      : disk_(disk), block_bytes_(block_bytes), capacity_(static_cast<size_t>(capacity)) {
    thread_ = std::thread([this] { Run(); });
  }

  ~Spiller() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();  // writes what is queued first
  }

  void Offer(BlockHash hash, std::optional<BlockHash> parent, std::span<const std::byte> data) {
    std::lock_guard lock(mu_);
    if (queue_.size() >= capacity_) {
      ++dropped_;
      return;
    }
    std::vector<std::byte> buffer;
    if (!spare_.empty()) {
      buffer = std::move(spare_.back());
      spare_.pop_back();
    }
    buffer.assign(data.begin(), data.end());
    queue_.push_back({hash, parent, std::move(buffer)});
    cv_.notify_all();
  }

  // Until every queued block is written.
  void Flush() {
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [&] { return queue_.empty() && !writing_; });
  }

  uint64_t spilled() const {
    std::lock_guard lock(mu_);
    return spilled_;
  }
  uint64_t dropped() const {
    std::lock_guard lock(mu_);
    return dropped_;
  }

 private:
  struct Item {
    BlockHash hash;
    std::optional<BlockHash> parent;
    std::vector<std::byte> data;
  };

  void Run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop, and nothing left to write
      Item item = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      lock.unlock();
      auto put = disk_->Put(item.hash, item.parent, {item.data.data(), block_bytes_});
      lock.lock();
      writing_ = false;
      if (put.ok() && *put == PutResult::kStored) ++spilled_;
      spare_.push_back(std::move(item.data));
      if (queue_.empty()) idle_cv_.notify_all();
    }
  }

  DiskStore* const disk_;
  const size_t block_bytes_;
  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Item> queue_;
  std::vector<std::vector<std::byte>> spare_;  // written items' buffers, reused
  bool stop_ = false;
  bool writing_ = false;
  uint64_t spilled_ = 0;
  uint64_t dropped_ = 0;
  std::thread thread_;
};

KvTiers::KvTiers(BlockMover* mover) : mover_(mover) {}

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
  if (tiers->disk_ != nullptr) {
    tiers->spiller_ = std::make_unique<Spiller>(tiers->disk_.get(), block_bytes,
                                                std::max(1, options.spill_queue_blocks));
  }
  if (tiers->host_ != nullptr && tiers->spiller_ != nullptr) {
    Spiller* spiller = tiers->spiller_.get();
    tiers->host_->set_evict_hook([spiller](BlockHash hash, std::optional<BlockHash> parent,
                                           std::span<const std::byte> data) {
      spiller->Offer(hash, parent, data);
    });
  }
  return tiers;
}

int KvTiers::CountPrefix(std::span<const BlockHash> hashes) {
  if (spiller_ != nullptr) spiller_->Flush();
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
  const size_t block_bytes = mover_->block_bytes();
  // Where each block of the held prefix comes from: G2's memory, or a G3 read into staging.
  std::vector<const std::byte*> src;
  std::vector<size_t> from_disk;  // positions in src
  for (BlockHash h : hashes) {
    if (host_ != nullptr && host_->Contains(h)) {
      src.push_back(nullptr);  // filled below, once the disk reads are done
    } else if (disk_ != nullptr && disk_->Contains(h)) {
      from_disk.push_back(src.size());
      src.push_back(nullptr);
    } else {
      break;
    }
  }
  size_t n = src.size();
  if (!from_disk.empty()) {
    staging_.resize(from_disk.size() * block_bytes);
    std::vector<BlockHash> disk_hashes;
    std::vector<std::span<std::byte>> outs;
    for (size_t j = 0; j < from_disk.size(); ++j) {
      disk_hashes.push_back(hashes[from_disk[j]]);
      outs.emplace_back(staging_.data() + j * block_bytes, block_bytes);
    }
    const std::vector<Status> read = disk_->GetMany(disk_hashes, outs);
    for (size_t j = 0; j < from_disk.size(); ++j) {
      if (!read[j].ok()) {  // a miss after all (corrupt slot, disabled tier): the prefix ends here
        n = std::min(n, from_disk[j]);
        break;
      }
      src[from_disk[j]] = outs[j].data();
    }
  }
  uint64_t host_count = 0;
  for (size_t i = 0; i < n; ++i) {
    if (src[i] != nullptr) continue;
    src[i] = host_->Find(hashes[i]);
    if (src[i] == nullptr) {
      n = i;
      break;
    }
    ++host_count;
  }
  if (n == 0) return 0;
  if (!mover_->CopyIn(blocks.first(n), std::span<const std::byte* const>(src).first(n)).ok()) {
    return 0;
  }
  counts_.onboarded_host += host_count;
  counts_.onboarded_disk += n - host_count;
  return static_cast<int>(n);
}

KvTiers::~KvTiers() {
  if (Status s = Drain().status(); !s.ok()) {
    spdlog::error("kv tiers: waiting for offload copies failed error=\"{}\"", s.ToString());
  }
}

StatusOr<std::vector<BlockId>> KvTiers::Commit(bool wait) {
  std::vector<BlockId> released;
  if (in_flight_.empty()) return released;
  TANDEM_ASSIGN_OR_RETURN(const std::vector<uint64_t> finished, mover_->FinishedCopies(wait));
  for (uint64_t ticket : finished) {
    TANDEM_CHECK(!in_flight_.empty() && in_flight_.front().ticket == ticket);
    for (const OffloadBlock& b : in_flight_.front().blocks) {
      host_->CommitPut(b.hash, b.parent);
      released.push_back(b.block);
    }
    counts_.offloaded += in_flight_.front().blocks.size();
    in_flight_.pop_front();
  }
  return released;
}

StatusOr<std::vector<BlockId>> KvTiers::Poll() { return Commit(false); }

StatusOr<std::vector<BlockId>> KvTiers::Drain() { return Commit(true); }

StatusOr<KvTiers::Offloaded> KvTiers::Offload(std::span<const OffloadBlock> blocks) {
  const size_t block_bytes = mover_->block_bytes();
  Offloaded result;
  if (host_ != nullptr) {
    // One background batch; should G2 have no slot left that is not being written, the copies
    // in flight are waited for (and their blocks returned too) and the batch goes on.
    std::vector<BlockId> ids;
    std::vector<std::byte*> dst;
    std::vector<OffloadBlock> taken;
    const auto begin = [&]() -> Status {
      if (ids.empty()) return OkStatus();
      auto ticket = mover_->BeginCopyOut(ids, dst);
      if (!ticket.ok()) {
        for (const OffloadBlock& b : taken) host_->AbortPut(b.hash);
        return ticket.status();
      }
      in_flight_.push_back({*ticket, std::move(taken)});
      result.in_flight.insert(result.in_flight.end(), ids.begin(), ids.end());
      ids.clear();
      dst.clear();
      taken.clear();
      return OkStatus();
    };
    for (size_t i = 0; i < blocks.size(); ++i) {
      bool full = false;
      std::byte* slot = host_->BeginPut(blocks[i].hash, &full);
      if (full) {
        TANDEM_RETURN_IF_ERROR(begin());
        TANDEM_ASSIGN_OR_RETURN(std::vector<BlockId> done, Drain());
        result.finished.insert(result.finished.end(), done.begin(), done.end());
        slot = host_->BeginPut(blocks[i].hash, &full);
        if (full) break;  // G2 has no room at all
      }
      if (slot == nullptr) continue;  // held already (refreshed)
      ids.push_back(blocks[i].block);
      dst.push_back(slot);
      taken.push_back(blocks[i]);
    }
    TANDEM_RETURN_IF_ERROR(begin());
    return result;
  }
  // No host tier: G1's blocks go to the disk tier directly (when it admits them), through the
  // writer thread.
  if (disk_ == nullptr) return result;
  std::vector<const OffloadBlock*> taken;
  for (const OffloadBlock& b : blocks) {
    if (!disk_->Contains(b.hash)) taken.push_back(&b);
  }
  if (taken.empty()) return result;
  staging_.resize(taken.size() * block_bytes);
  std::vector<BlockId> ids;
  std::vector<std::byte*> dst;
  for (size_t j = 0; j < taken.size(); ++j) {
    ids.push_back(taken[j]->block);
    dst.push_back(staging_.data() + j * block_bytes);
  }
  TANDEM_RETURN_IF_ERROR(mover_->CopyOut(ids, dst));
  for (size_t j = 0; j < taken.size(); ++j) {
    spiller_->Offer(taken[j]->hash, taken[j]->parent, {dst[j], block_bytes});
  }
  return result;
}

void KvTiers::NoteReuse(std::span<const BlockHash> hashes) {
  if (disk_ == nullptr) return;
  for (BlockHash h : hashes) disk_->NoteReuse(h);
}

KvTiersStats KvTiers::stats() const {
  KvTiersStats s = counts_;
  if (spiller_ != nullptr) {
    s.spilled = spiller_->spilled();
    s.spill_dropped = spiller_->dropped();
  }
  if (host_ != nullptr) {
    s.host = host_->stats();
    s.host_blocks = host_->size();
    s.host_capacity = host_->capacity();
  }
  if (disk_ != nullptr) {
    s.disk = disk_->stats();
    s.disk_blocks = disk_->size();
    s.disk_capacity = disk_->capacity();
  }
  return s;
}

}  // namespace tandem::kvcache
