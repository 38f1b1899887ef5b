#include "engine/scheduler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "common/logging.h"
#include "common/status_macros.h"

namespace tandem::engine {

Scheduler::Scheduler(SchedulerOptions options, kvcache::BlockPool* pool, kvcache::KvTiers* tiers)
    : options_(options), pool_(pool), tiers_(tiers) {}

int Scheduler::BlocksFor(int64_t tokens) const {
  return static_cast<int>((tokens + options_.block_size - 1) / options_.block_size);
}

void Scheduler::Add(std::unique_ptr<Sequence> seq) {
  seq->pull_wanted = seq->request.kv_source.has_value();
  waiting_.push_back(std::move(seq));
}

void Scheduler::SetPuller(
    std::shared_ptr<KvPuller> puller,
    std::function<void(uint64_t serial, const KvPullResult& result)> on_pull_done) {
  puller_ = std::move(puller);
  on_pull_done_ = std::move(on_pull_done);
}

void Scheduler::NoteFirstAdmission(Sequence* seq) {
  if (seq->admitted_once) return;
  seq->admitted_once = true;
  seq->queue_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - seq->submitted).count();
  seq->cached_prompt_tokens = std::min(seq->num_computed, seq->num_prompt);
}

void Scheduler::ReleaseBlocks(Sequence* seq) {
  pool_->Release(seq->blocks);
  seq->blocks.clear();
  seq->num_computed = 0;
  seq->num_registered = 0;
  seq->tiers_checked = false;  // back in the queue, it looks for its prefix anew
}

void Scheduler::Preempt(Sequence* seq) {
  ReleaseBlocks(seq);
  auto it = std::find_if(running_.begin(), running_.end(),
                         [&](const auto& s) { return s.get() == seq; });
  TANDEM_CHECK(it != running_.end());
  waiting_.push_front(std::move(*it));
  running_.erase(it);
}

void Scheduler::ExtendHashes(Sequence* seq, int full_blocks) const {
  const int bs = options_.block_size;
  while (static_cast<int>(seq->hashes.size()) < full_blocks) {
    const size_t b = seq->hashes.size();
    const std::optional<BlockHash> parent =
        b == 0 ? std::nullopt : std::optional<BlockHash>(seq->hashes.back());
    seq->hashes.push_back(HashBlock(
        parent, std::span<const int32_t>(seq->tokens).subspan(b * bs, bs), seq->hash_seed));
  }
}

bool Scheduler::MatchCachedPrefix(Sequence* seq) {
  // A request that wants every prompt position's logits must compute them all.
  if (seq->request.prompt_logits == PromptLogits::kAll) return false;
  // At least the last token must run, to produce the logits the next token is sampled from.
  const int max_blocks = (static_cast<int>(seq->tokens.size()) - 1) / options_.block_size;
  ExtendHashes(seq, max_blocks);
  const std::span<const BlockHash> wanted =
      std::span<const BlockHash>(seq->hashes).first(static_cast<size_t>(max_blocks));
  seq->blocks = pool_->MatchPrefix(wanted);
  seq->num_registered = static_cast<int>(seq->blocks.size());
  seq->num_computed = seq->num_registered * options_.block_size;
  if (tiers_ == nullptr || seq->tiers_checked) return false;
  seq->tiers_checked = true;
  const size_t hit = seq->blocks.size();
  tiers_->NoteReuse(wanted.first(hit));
  const kvcache::KvTiers::LoadStart start = tiers_->BeginLoad(wanted.subspan(hit));
  if (start.blocks == 0) return false;
  if (start.blocks > pool_->num_available()) {  // no room to load into: compute instead
    tiers_->CancelLoad(start.ticket);
    return false;
  }
  auto blocks = pool_->Allocate(start.blocks);
  TANDEM_CHECK(blocks.ok());
  loads_.push_back({start.ticket, std::move(*blocks), nullptr});
  return true;
}

bool Scheduler::StartPull(std::unique_ptr<Sequence>& owned, bool* wait) {
  Sequence* seq = owned.get();
  *wait = false;
  if (puller_ == nullptr) {
    GiveUpPull(seq,
               FailedPreconditionError(
                   "this worker registered no transfer backend to pull KV with (--transfer)"),
               /*release=*/false);
    return false;
  }
  if (!seq->source_error.ok()) {
    GiveUpPull(seq, seq->source_error, /*release=*/true);
    return false;
  }
  const KvSource& source = *seq->request.kv_source;
  // What the source holds beyond the pool's own prefix is pulled, not looked up in the tiers.
  seq->tiers_checked = true;
  MatchCachedPrefix(seq);
  // The last token runs here in any case (its logits give the next token).
  const int tokens = std::min(source.handle.num_tokens, static_cast<int>(seq->tokens.size()) - 1);
  const int want = BlocksFor(tokens);
  const int hit = static_cast<int>(seq->blocks.size());
  if (tokens - hit * options_.block_size < options_.block_size) {
    // The pool holds all of it but a partial block, whose few tokens ride along the next step
    // for less than a pull's round trip.
    seq->pull_wanted = false;
    puller_->Release(source);
    return false;
  }
  const int n = want - hit;
  if (n > pool_->num_available()) {
    ReleaseBlocks(seq);
    *wait = true;
    return false;
  }
  auto blocks = pool_->Allocate(n);
  TANDEM_CHECK(blocks.ok());
  const std::vector<int32_t> remote(source.handle.block_ids.begin() + hit,
                                    source.handle.block_ids.begin() + want);
  std::vector<int32_t> local;
  local.reserve(blocks->size());
  for (BlockId b : *blocks) local.push_back(b.value());
  const uint64_t serial = next_pull_serial_++;
  NoteFirstAdmission(seq);
  std::unique_ptr<KvPull> handle =
      puller_->Start(source, remote, local,
                     [serial, done = on_pull_done_](const KvPullResult& r) { done(serial, r); });
  pulls_.push_back({serial, std::move(*blocks), tokens, std::move(handle), std::move(owned)});
  return true;
}

void Scheduler::GiveUpPull(Sequence* seq, const Status& why, bool release) {
  seq->pull_wanted = false;
  seq->kv_recomputed = true;
  ++pull_stats_.recomputes;
  const KvSource& source = *seq->request.kv_source;
  spdlog::warn("kv pull failed, prefilling here request={} peer={} error={}", seq->id.value(),
               source.peer, Quoted(why.ToString()));
  if (release && puller_ != nullptr) puller_->Release(source);
}

bool Scheduler::FinishPull(uint64_t serial, const KvPullResult& result) {
  auto it =
      std::find_if(pulls_.begin(), pulls_.end(), [&](const Pull& p) { return p.serial == serial; });
  if (it == pulls_.end()) return false;
  std::unique_ptr<Sequence> owned = std::move(it->seq);
  Sequence* seq = owned.get();
  if (result.status.ok()) {
    // The pulled blocks hold final KV: the full ones join the prefix index like computed ones.
    const int full = it->tokens / options_.block_size;
    ExtendHashes(seq, full);
    for (BlockId b : it->blocks) {
      const size_t i = seq->blocks.size();
      seq->blocks.push_back(b);
      if (static_cast<int>(i) >= full) continue;
      pool_->Register(b, seq->hashes[i],
                      i > 0 ? std::optional<BlockHash>(seq->hashes[i - 1]) : std::nullopt);
    }
    seq->num_registered = full;
    seq->num_computed = it->tokens;
    seq->pull_wanted = false;
    ++pull_stats_.pulls;
    pull_stats_.bytes += static_cast<int64_t>(result.bytes);
    pull_stats_.seconds += result.seconds;
  } else {
    pool_->Release(it->blocks);
    ReleaseBlocks(seq);
    GiveUpPull(seq, result.status, /*release=*/false);  // The puller has released it.
  }
  pulls_.erase(it);
  waiting_.push_front(std::move(owned));
  return true;
}

std::unique_ptr<Sequence> Scheduler::DropPull(std::vector<Pull>::iterator it) {
  it->handle.reset();  // Returns once nothing moves into its blocks any more.
  pool_->Release(it->blocks);
  std::unique_ptr<Sequence> seq = std::move(it->seq);
  pulls_.erase(it);
  ReleaseBlocks(seq.get());
  return seq;
}

void Scheduler::FinishLoads(bool wait) {
  if (loads_.empty()) return;
  std::vector<std::unique_ptr<Sequence>> ready;
  for (auto it = loads_.begin(); it != loads_.end();) {
    if (!wait && !tiers_->LoadReady(it->ticket)) {
      ++it;
      continue;
    }
    Sequence* seq = it->seq.get();
    const int loaded = tiers_->FinishLoad(it->ticket, it->blocks);
    const size_t hit = seq->blocks.size();
    tiers_->NoteReuse(std::span<const BlockHash>(seq->hashes).subspan(hit, loaded));
    for (int j = 0; j < loaded; ++j) {
      const size_t b = hit + static_cast<size_t>(j);
      pool_->Register(it->blocks[static_cast<size_t>(j)], seq->hashes[b],
                      b > 0 ? std::optional<BlockHash>(seq->hashes[b - 1]) : std::nullopt);
      seq->blocks.push_back(it->blocks[static_cast<size_t>(j)]);
    }
    pool_->Release(std::span<const BlockId>(it->blocks).subspan(static_cast<size_t>(loaded)));
    seq->num_registered = static_cast<int>(seq->blocks.size());
    seq->num_computed = seq->num_registered * options_.block_size;
    onboarded_blocks_ += loaded;
    ready.push_back(std::move(it->seq));
    it = loads_.erase(it);
  }
  // Back at the head of the queue, in the order they arrived.
  for (auto r = ready.rbegin(); r != ready.rend(); ++r) waiting_.push_front(std::move(*r));
}

void Scheduler::WaitForLoads(std::chrono::milliseconds timeout) {
  if (!loads_.empty()) tiers_->WaitForLoads(timeout);
}

void Scheduler::CollectOffloads(bool wait) {
  if (tiers_ == nullptr) return;
  auto done = wait ? tiers_->Drain() : tiers_->Poll();
  if (done.ok()) {
    pool_->Release(*done);
  } else {
    spdlog::warn("kv offload failed error={}", Quoted(done.status().ToString()));
  }
}

Scheduler::~Scheduler() {
  while (!loads_.empty()) DropLoad(loads_.begin());
  while (!pulls_.empty()) DropPull(pulls_.begin());
  CollectOffloads(/*wait=*/true);
}

SchedulerOutput Scheduler::Schedule() {
  CollectOffloads(/*wait=*/false);
  FinishLoads(/*wait=*/false);
  SchedulerOutput out;
  int budget = options_.max_num_batched_tokens;

  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* seq = running_[i].get();
    const int n = std::min(seq->num_pending(), budget);
    const int needed = BlocksFor(seq->num_computed + n) - static_cast<int>(seq->blocks.size());
    bool self_preempted = false;
    while (needed > pool_->num_available()) {
      Sequence* victim = running_.back().get();
      Preempt(victim);
      ++out.num_preempted;
      if (victim == seq) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    if (needed > 0) {
      auto blocks = pool_->Allocate(needed);
      TANDEM_CHECK(blocks.ok());
      seq->blocks.insert(seq->blocks.end(), blocks->begin(), blocks->end());
    }
    out.scheduled.push_back({seq, n});
    budget -= n;
    ++i;
  }

  // Admit nothing new in a step that had to preempt: blocks are short.
  while (out.num_preempted == 0 && !waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < options_.max_num_seqs) {
    Sequence* seq = waiting_.front().get();
    if (seq->blocks.empty() && seq->pull_wanted) {
      // Its prompt's KV is on a prefill worker: it steps aside while what the pool lacks of it
      // is pulled (and then, with the blocks, is back at the head of the queue).
      bool wait = false;
      if (StartPull(waiting_.front(), &wait)) {
        waiting_.pop_front();
        continue;
      }
      if (wait) break;
    }
    if (seq->blocks.empty() && MatchCachedPrefix(seq)) {
      // Its prefix is being loaded from the host or disk tier: the others go on meanwhile. A
      // load with nothing to read from disk is ready at once, and the sequence is back at the
      // head of the queue with its blocks.
      loads_.back().seq = std::move(waiting_.front());
      waiting_.pop_front();
      FinishLoads(/*wait=*/false);
      continue;
    }
    const int n = std::min(seq->num_pending(), budget);
    const int needed = BlocksFor(seq->num_computed + n) - static_cast<int>(seq->blocks.size());
    if (needed > pool_->num_available()) {
      ReleaseBlocks(seq);
      break;
    }
    if (needed > 0) {
      auto blocks = pool_->Allocate(needed);
      TANDEM_CHECK(blocks.ok());
      seq->blocks.insert(seq->blocks.end(), blocks->begin(), blocks->end());
    }
    NoteFirstAdmission(seq);
    out.scheduled.push_back({seq, n});
    budget -= n;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  return out;
}

void Scheduler::OnStepDone(const SchedulerOutput& output) {
  std::vector<kvcache::OffloadBlock> completed;
  for (const ScheduledSequence& s : output.scheduled) {
    Sequence* seq = s.seq;
    seq->num_computed += s.num_tokens;
    const int full = seq->num_computed / options_.block_size;
    ExtendHashes(seq, full);
    for (int b = seq->num_registered; b < full; ++b) {
      const std::optional<BlockHash> parent =
          b > 0 ? std::optional<BlockHash>(seq->hashes[b - 1]) : std::nullopt;
      pool_->Register(seq->blocks[b], seq->hashes[b], parent);
      if (tiers_ != nullptr) completed.push_back({seq->hashes[b], parent, seq->blocks[b]});
    }
    seq->num_registered = std::max(seq->num_registered, full);
  }
  if (!completed.empty()) {
    // The copies run in the background: their blocks stay referenced until they are done. A
    // tier that cannot take the blocks loses nothing the pool holds: serving goes on.
    auto offloaded = tiers_->Offload(completed);
    if (offloaded.ok()) {
      pool_->Retain(offloaded->in_flight);
      pool_->Release(offloaded->finished);
    } else {
      spdlog::warn("kv offload failed blocks={} error={}", completed.size(),
                   Quoted(offloaded.status().ToString()));
    }
  }
}

std::unique_ptr<Sequence> Scheduler::Remove(RequestId id) {
  auto take = [&](auto& container) -> std::unique_ptr<Sequence> {
    auto it = std::find_if(container.begin(), container.end(),
                           [&](const auto& s) { return s->id == id; });
    if (it == container.end()) return nullptr;
    std::unique_ptr<Sequence> seq = std::move(*it);
    container.erase(it);
    ReleaseBlocks(seq.get());
    return seq;
  };
  if (auto seq = take(running_)) return seq;
  if (auto seq = take(waiting_)) return seq;
  auto load =
      std::find_if(loads_.begin(), loads_.end(), [&](const Load& l) { return l.seq->id == id; });
  if (load != loads_.end()) return DropLoad(load);
  auto pull =
      std::find_if(pulls_.begin(), pulls_.end(), [&](const Pull& p) { return p.seq->id == id; });
  if (pull != pulls_.end()) return DropPull(pull);
  return nullptr;
}

std::unique_ptr<Sequence> Scheduler::DropLoad(std::vector<Load>::iterator it) {
  tiers_->CancelLoad(it->ticket);
  pool_->Release(it->blocks);
  std::unique_ptr<Sequence> seq = std::move(it->seq);
  loads_.erase(it);
  ReleaseBlocks(seq.get());
  return seq;
}

std::vector<std::unique_ptr<Sequence>> Scheduler::RemoveAll() {
  std::vector<std::unique_ptr<Sequence>> all;
  for (auto& seq : running_) {
    ReleaseBlocks(seq.get());
    all.push_back(std::move(seq));
  }
  for (auto& seq : waiting_) {
    ReleaseBlocks(seq.get());
    all.push_back(std::move(seq));
  }
  running_.clear();
  waiting_.clear();
  while (!loads_.empty()) all.push_back(DropLoad(loads_.begin()));
  while (!pulls_.empty()) all.push_back(DropPull(pulls_.begin()));
  return all;
}

Sequence* Scheduler::Stuck() const {
  // A load or a pull in flight holds blocks that come back to the pool.
  if (!running_.empty() || !loads_.empty() || !pulls_.empty() || waiting_.empty()) return nullptr;
  return waiting_.front().get();
}

}  // namespace tandem::engine
