#include "kvcache/kv_tiers.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/logging.h"
#include "common/status_macros.h"

namespace tandem::kvcache {

// G2's evictions on their way to G3: copied out of the evicted slot at once (the slot is reused
// right after), then written by a thread of its own, so that the engine does not wait for the
// disk. At most `capacity` blocks wait: past that, Offer waits for the writer (counted), so a
// burst larger than the queue slows the engine to the disk's pace rather than losing blocks.
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
    std::unique_lock lock(mu_);
    if (queue_.size() >= capacity_) {
      ++waits_;
      idle_cv_.wait(lock, [&] { return queue_.size() < capacity_; });
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

  // Whether `hash` is queued or being written (on its way to G3).
  bool Holds(BlockHash hash) const {
    std::lock_guard lock(mu_);
    if (writing_ && writing_hash_ == hash) return true;
    return std::any_of(queue_.begin(), queue_.end(),
                       [&](const Item& item) { return item.hash == hash; });
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
  uint64_t waits() const {
    std::lock_guard lock(mu_);
    return waits_;
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
      writing_hash_ = item.hash;
      lock.unlock();
      auto put = disk_->Put(item.hash, item.parent, {item.data.data(), block_bytes_});
      lock.lock();
      writing_ = false;
      if (put.ok() && *put == PutResult::kStored) ++spilled_;
      spare_.push_back(std::move(item.data));
      idle_cv_.notify_all();  // room in the queue, or empty
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
  BlockHash writing_hash_ = 0;
  uint64_t spilled_ = 0;
  uint64_t waits_ = 0;
  std::thread thread_;
};

// G3 reads for onboarding on a thread of their own: each load's blocks read in one batch
// (io_uring) into the load's buffer while the engine goes on, after the writer has written what
// was queued (a block may still be on its way to G3 when its load starts).
class KvTiers::Loader {
 public:
  struct Load {
    std::vector<BlockHash> hashes;  // read from G3, in order
    std::vector<std::byte> data;    // hashes.size() blocks
    std::vector<Status> results;
    bool done = false;
  };

  Loader(DiskStore* disk, Spiller* spiller, size_t block_bytes)
      : disk_(disk), spiller_(spiller), block_bytes_(block_bytes) {
    thread_ = std::thread([this] { Run(); });
  }

  ~Loader() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  void Start(uint64_t ticket, std::vector<BlockHash> hashes) {
    auto load = std::make_shared<Load>();
    load->hashes = std::move(hashes);
    std::lock_guard lock(mu_);
    loads_[ticket] = load;
    queue_.push_back(load);
    cv_.notify_all();
  }

  bool Ready(uint64_t ticket) const {
    std::lock_guard lock(mu_);
    auto it = loads_.find(ticket);
    return it == loads_.end() || it->second->done;
  }

  // The finished load (null when unknown); forgets it.
  std::shared_ptr<Load> Take(uint64_t ticket) {
    std::unique_lock lock(mu_);
    auto it = loads_.find(ticket);
    if (it == loads_.end()) return nullptr;
    std::shared_ptr<Load> load = it->second;
    done_cv_.wait(lock, [&] { return load->done; });
    loads_.erase(ticket);
    return load;
  }

  void WaitAny(std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    done_cv_.wait_for(lock, timeout, [&] {
      for (const auto& [ticket, load] : loads_) {
        if (load->done) return true;
      }
      return loads_.empty();
    });
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      std::shared_ptr<Load> load = queue_.front();
      queue_.pop_front();
      lock.unlock();
      spiller_->Flush();
      load->data.resize(load->hashes.size() * block_bytes_);
      std::vector<std::span<std::byte>> outs;
      for (size_t i = 0; i < load->hashes.size(); ++i) {
        outs.emplace_back(load->data.data() + i * block_bytes_, block_bytes_);
      }
      std::vector<Status> results = disk_->GetMany(load->hashes, outs);
      lock.lock();
      load->results = std::move(results);
      load->done = true;
      done_cv_.notify_all();
    }
  }

  DiskStore* const disk_;
  Spiller* const spiller_;
  const size_t block_bytes_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_, done_cv_;
  std::deque<std::shared_ptr<Load>> queue_;
  std::unordered_map<uint64_t, std::shared_ptr<Load>> loads_;
  bool stop_ = false;
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
  if (tiers->disk_ != nullptr) {
    tiers->loader_ =
        std::make_unique<Loader>(tiers->disk_.get(), tiers->spiller_.get(), block_bytes);
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

int KvTiers::CountPrefix(std::span<const BlockHash> hashes) const {
  int n = 0;
  for (BlockHash h : hashes) {
    const bool held = (host_ != nullptr && host_->Contains(h)) ||
                      (spiller_ != nullptr && spiller_->Holds(h)) ||
                      (disk_ != nullptr && disk_->Contains(h));
    if (!held) break;
    ++n;
  }
  return n;
}

KvTiers::LoadStart KvTiers::BeginLoad(std::span<const BlockHash> hashes) {
  const int n = CountPrefix(hashes);
  if (n == 0) return {};
  LoadStart start{next_load_++, n};
  std::vector<BlockHash> from_disk;
  for (int i = 0; i < n; ++i) {
    const BlockHash h = hashes[static_cast<size_t>(i)];
    if (host_ == nullptr || !host_->Contains(h)) from_disk.push_back(h);
  }
  load_hashes_[start.ticket] = {hashes.begin(), hashes.begin() + n};
  if (!from_disk.empty()) loader_->Start(start.ticket, std::move(from_disk));
  return start;
}

bool KvTiers::LoadReady(uint64_t ticket) const {
  return loader_ == nullptr || loader_->Ready(ticket);
}

void KvTiers::WaitForLoads(std::chrono::milliseconds timeout) const {
  if (loader_ != nullptr) loader_->WaitAny(timeout);
}

void KvTiers::CancelLoad(uint64_t ticket) {
  if (loader_ != nullptr) loader_->Take(ticket);  // waits for its reads (they touch no G1 block)
  load_hashes_.erase(ticket);
}

int KvTiers::FinishLoad(uint64_t ticket, std::span<const BlockId> into) {
  auto it = load_hashes_.find(ticket);
  TANDEM_CHECK(it != load_hashes_.end());
  const std::vector<BlockHash> hashes = std::move(it->second);
  load_hashes_.erase(it);
  std::shared_ptr<Loader::Load> disk_load = loader_ != nullptr ? loader_->Take(ticket) : nullptr;
  const size_t block_bytes = mover_->block_bytes();
  // Where each block comes from, up to the first one no longer held: G2's memory, or the reads.
  std::vector<const std::byte*> src;
  size_t next_read = 0;
  uint64_t host_count = 0;
  for (size_t i = 0; i < hashes.size() && i < into.size(); ++i) {
    const bool read = disk_load != nullptr && next_read < disk_load->hashes.size() &&
                      disk_load->hashes[next_read] == hashes[i];
    if (read) {
      if (!disk_load->results[next_read].ok()) break;  // corrupt, or the tier went off: a miss
      src.push_back(disk_load->data.data() + next_read * block_bytes);
      ++next_read;
      continue;
    }
    const std::byte* held = host_ != nullptr ? host_->Find(hashes[i]) : nullptr;
    if (held == nullptr) break;  // evicted since BeginLoad
    src.push_back(held);
    ++host_count;
  }
  if (src.empty() || !mover_->CopyIn(into.first(src.size()), src).ok()) return 0;
  counts_.onboarded_host += host_count;
  counts_.onboarded_disk += src.size() - host_count;
  return static_cast<int>(src.size());
}

KvTiers::~KvTiers() {
  if (Status s = Drain().status(); !s.ok()) {
    spdlog::error("kv tiers waiting for offload copies failed error={}", Quoted(s.ToString()));
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
    s.spill_waits = spiller_->waits();
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
