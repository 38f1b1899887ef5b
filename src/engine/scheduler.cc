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

void Scheduler::Add(std::unique_ptr<Sequence> seq) { waiting_.push_back(std::move(seq)); }

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
    if (!seq->admitted_once) {
      seq->admitted_once = true;
      seq->queue_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - seq->submitted).count();
      seq->cached_prompt_tokens = std::min(seq->num_computed, seq->num_prompt);
    }
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
  auto it = std::find_if(loads_.begin(), loads_.end(),
                         [&](const Load& l) { return l.seq->id == id; });
  if (it == loads_.end()) return nullptr;
  std::unique_ptr<Sequence> seq = DropLoad(it);
  return seq;
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
  return all;
}

Sequence* Scheduler::Stuck() const {
  // A load in flight holds blocks that come back to the pool.
  if (!running_.empty() || !loads_.empty() || waiting_.empty()) return nullptr;
  return waiting_.front().get();
}

}  // namespace tandem::engine
