#include "engine/llm_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <string>

#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/rope.h"

namespace tandem::engine {
namespace {

Status ValidateSampling(const SamplingParams& p, int vocab) {
  if (!(p.temperature >= 0.0f)) return InvalidArgumentError("temperature must be >= 0");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return InvalidArgumentError("top_p must be in (0, 1]");
  if (p.top_k < -1) return InvalidArgumentError("top_k must be -1, 0 (off) or positive");
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) return InvalidArgumentError("min_p must be in [0, 1]");
  if (!(p.repetition_penalty > 0.0f)) {
    return InvalidArgumentError("repetition_penalty must be > 0");
  }
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    return InvalidArgumentError("presence_penalty must be in [-2, 2]");
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return InvalidArgumentError("frequency_penalty must be in [-2, 2]");
  }
  if (p.max_tokens < 1) return InvalidArgumentError("max_tokens must be >= 1");
  if (p.top_logprobs < 0 || p.top_logprobs > 20) {
    return InvalidArgumentError("top_logprobs must be in [0, 20]");
  }
  for (int32_t t : p.stop_token_ids) {
    if (t < 0 || t >= vocab) {
      return InvalidArgumentError("stop token id " + std::to_string(t) +
                                  " is outside the vocabulary");
    }
  }
  return OkStatus();
}

// Why a decode request's KV source cannot be used here (it is then prefilled here): what the
// prefill worker sent must fit this request and this pool before anything is read.
Status CheckKvSource(const KvSource& source, const KvLayout& layout, int num_prompt) {
  if (!(source.layout == layout)) {
    return InvalidArgumentError("the prefill worker's KV layout differs from this worker's");
  }
  const KvHandle& h = source.handle;
  if (h.num_tokens < 1 || h.num_tokens > num_prompt) {
    return InvalidArgumentError("the KV handle holds " + std::to_string(h.num_tokens) +
                                " tokens, outside [1, " + std::to_string(num_prompt) +
                                "] for this prompt");
  }
  const int64_t blocks = (int64_t{h.num_tokens} + layout.block_size - 1) / layout.block_size;
  if (static_cast<int64_t>(h.block_ids.size()) != blocks) {
    return InvalidArgumentError("the KV handle lists " + std::to_string(h.block_ids.size()) +
                                " blocks for " + std::to_string(h.num_tokens) + " tokens");
  }
  for (int32_t b : h.block_ids) {
    if (b < 0) return InvalidArgumentError("the KV handle lists block " + std::to_string(b));
  }
  if (h.expires_in_ms <= 0) return FailedPreconditionError("the KV lease had expired");
  return OkStatus();
}

}  // namespace

namespace {

// The pool's blocks in and out of host memory, for the tiers.
class RunnerBlockMover final : public kvcache::BlockMover {
 public:
  explicit RunnerBlockMover(ModelRunner* runner) : runner_(runner) {}
  size_t block_bytes() const override { return runner_->kv_layout().BlockBytes(); }
  Status CopyOut(std::span<const BlockId> blocks, std::span<std::byte* const> dst) override {
    return runner_->CopyBlocksOut(blocks, dst);
  }
  Status CopyIn(std::span<const BlockId> blocks, std::span<const std::byte* const> src) override {
    return runner_->CopyBlocksIn(blocks, src);
  }
  StatusOr<uint64_t> BeginCopyOut(std::span<const BlockId> blocks,
                                  std::span<std::byte* const> dst) override {
    return runner_->BeginCopyBlocksOut(blocks, dst);
  }
  StatusOr<std::vector<uint64_t>> FinishedCopies(bool wait) override {
    return runner_->FinishedCopies(wait);
  }

 private:
  ModelRunner* runner_;
};

}  // namespace

LlmEngine::LlmEngine(std::unique_ptr<ModelRunner> runner, const EngineOptions& options,
                     std::unique_ptr<kvcache::BlockMover> mover)
    : runner_(std::move(runner)),
      options_(options),
      max_model_len_(options.max_model_len > 0 ? options.max_model_len
                                               : MaxModelLen(runner_->config())),
      identity_(options.model_identity.empty() ? runner_->config().Identity()
                                               : options.model_identity),
      eos_ids_(runner_->config().eos_token_ids),
      events_(options.kv_event_capacity),
      mover_(std::move(mover)),
      pool_(kvcache::BlockPoolOptions{runner_->num_blocks(), options.enable_prefix_caching},
            nullptr, options.clock, &events_),
      leases_(&pool_, options.clock != nullptr ? options.clock : &kvcache::SystemClock(),
              options.kv_lease_ttl) {
  blocks_available_ = pool_.num_available();
}

// Null tiers when neither is sized.
Status LlmEngine::CreateTiers() {
  TANDEM_ASSIGN_OR_RETURN(
      tiers_, kvcache::KvTiers::Create({.host_blocks = options_.host_cache_blocks,
                                        .disk_path = options_.disk_cache_path,
                                        .disk_blocks = options_.disk_cache_blocks,
                                        .disk_admit_after_reuses =
                                            options_.disk_cache_admit_after_reuses},
                                       mover_.get(), runner_->host_allocator(), nullptr,
                                       &events_));
  scheduler_ = std::make_unique<Scheduler>(
      SchedulerOptions{runner_->kv_layout().block_size, options_.max_num_seqs,
                       options_.max_num_batched_tokens},
      &pool_, tiers_.get());
  return OkStatus();
}

StatusOr<std::unique_ptr<LlmEngine>> LlmEngine::Create(std::unique_ptr<ModelRunner> runner,
                                                       const EngineOptions& options) {
  if (runner == nullptr) return InvalidArgumentError("no model runner");
  if (options.max_num_seqs < 1) return InvalidArgumentError("max_num_seqs must be >= 1");
  if (options.max_num_batched_tokens < 1) {
    return InvalidArgumentError("max_num_batched_tokens must be >= 1");
  }
  if (options.max_model_len < 0) return InvalidArgumentError("max_model_len must be >= 0");
  if (options.host_cache_blocks < 0 || options.disk_cache_blocks < 0) {
    return InvalidArgumentError("tier sizes must be >= 0");
  }
  if (!options.enable_prefix_caching &&
      (options.host_cache_blocks > 0 || options.disk_cache_blocks > 0)) {
    return InvalidArgumentError("host and disk KV tiers need prefix caching");
  }
  if (options.kv_event_capacity < 1) return InvalidArgumentError("kv_event_capacity must be >= 1");
  auto mover = std::make_unique<RunnerBlockMover>(runner.get());
  auto engine =
      std::unique_ptr<LlmEngine>(new LlmEngine(std::move(runner), options, std::move(mover)));
  TANDEM_RETURN_IF_ERROR(engine->CreateTiers());
  engine->thread_ = std::thread([e = engine.get()] { e->Loop(); });
  spdlog::info(
      "engine started blocks={} block_size={} max_model_len={} prefix_caching={} "
      "host_cache_blocks={} disk_cache_blocks={}",
      engine->runner_->num_blocks(), engine->runner_->kv_layout().block_size,
      engine->max_model_len_, options.enable_prefix_caching,
      engine->tiers_ && engine->tiers_->host() ? options.host_cache_blocks : 0,
      engine->tiers_ && engine->tiers_->disk() ? options.disk_cache_blocks : 0);
  return engine;
}

LlmEngine::~LlmEngine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int LlmEngine::vocab_size() const { return runner_->config().vocab_size; }

Status LlmEngine::Validate(const GenerateRequest& request) const {
  const int vocab = vocab_size();
  if (request.prompt_tokens.empty()) return InvalidArgumentError("the prompt is empty");
  for (int32_t t : request.prompt_tokens) {
    if (t < 0 || t >= vocab) {
      return InvalidArgumentError("prompt token id " + std::to_string(t) +
                                  " is outside the vocabulary [0, " + std::to_string(vocab) +
                                  ")");
    }
  }
  TANDEM_RETURN_IF_ERROR(ValidateSampling(request.sampling, vocab));
  const int64_t total =
      static_cast<int64_t>(request.prompt_tokens.size()) + request.sampling.max_tokens;
  if (total > max_model_len_) {
    return InvalidArgumentError("prompt (" + std::to_string(request.prompt_tokens.size()) +
                                " tokens) plus max_tokens (" +
                                std::to_string(request.sampling.max_tokens) +
                                ") exceeds the model's context of " +
                                std::to_string(max_model_len_) + " tokens");
  }
  if (scheduler_->BlocksFor(total) > runner_->num_blocks()) {
    return InvalidArgumentError("prompt plus max_tokens needs " +
                                std::to_string(scheduler_->BlocksFor(total)) +
                                " KV blocks, more than the pool's " +
                                std::to_string(runner_->num_blocks()));
  }
  return OkStatus();
}

StatusOr<std::pair<RequestId, std::shared_ptr<OutputStream>>> LlmEngine::Submit(
    GenerateRequest request) {
  TANDEM_RETURN_IF_ERROR(Validate(request));
  auto seq = std::make_unique<Sequence>();
  seq->stream = std::make_shared<OutputStream>();
  seq->sampling_seed = request.sampling.seed ? *request.sampling.seed : std::random_device{}();
  seq->hash_seed = BlockHashSeed(identity_, request.cache_salt);
  seq->tokens = request.prompt_tokens;
  seq->num_prompt = static_cast<int>(request.prompt_tokens.size());
  if (request.prefill_only) request.sampling.max_tokens = 1;
  if (request.kv_source) {
    seq->source_error = CheckKvSource(*request.kv_source, kv_layout(), seq->num_prompt);
  }
  seq->request = std::move(request);
  auto stream = seq->stream;
  RequestId id;
  {
    // The id is taken and the command queued in one step, so ids reach the engine in order.
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return UnavailableError("the engine is stopping");
    id = RequestId(next_id_++);
    seq->id = id;
    commands_.emplace_back(SubmitCommand{std::move(seq)});
  }
  cv_.notify_one();
  return std::make_pair(id, std::move(stream));
}

void LlmEngine::Cancel(RequestId id) { Post(CancelCommand{id}); }

void LlmEngine::ReleaseKv(uint64_t lease_id, std::vector<int32_t> blocks,
                          std::function<void(const Status&)> done) {
  Post(ReleaseKvCommand{lease_id, std::move(blocks), std::move(done)});
}

void LlmEngine::SetKvPuller(std::shared_ptr<KvPuller> puller) {
  Post(SetPullerCommand{std::move(puller)});
}

void LlmEngine::Post(Command command) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    commands_.push_back(std::move(command));
  }
  cv_.notify_one();
}

EngineStats LlmEngine::stats() const {
  EngineStats s;
  s.steps = steps_;
  s.preemptions = preemptions_;
  s.prompt_tokens = prompt_tokens_;
  s.cached_prompt_tokens = cached_prompt_tokens_;
  s.generated_tokens = generated_tokens_;
  s.blocks_total = runner_->num_blocks();
  s.blocks_available = blocks_available_;
  s.running = running_;
  s.waiting = waiting_;
  s.queued_prefill_tokens = queued_prefill_tokens_;
  s.onboarded_blocks = onboarded_blocks_;
  s.kv_leases = kv_leases_;
  s.kv_leases_expired = kv_leases_expired_;
  s.kv_pulls = kv_pulls_;
  s.kv_pulled_bytes = kv_pulled_bytes_;
  s.kv_pull_seconds = kv_pull_seconds_;
  s.kv_pull_recomputes = kv_pull_recomputes_;
  {
    std::lock_guard lock(tier_stats_mu_);
    s.tiers = tier_stats_;
  }
  s.simulation = runner_->simulation_stats();
  return s;
}

void LlmEngine::Apply(SubmitCommand& command) {
  std::unique_ptr<Sequence>& seq = command.seq;
  prompt_tokens_ += seq->num_prompt;
  queued_prefill_tokens_ += seq->num_prompt;
  scheduler_->Add(std::move(seq));
}

void LlmEngine::Apply(ReleaseKvCommand& command) {
  Status s;
  if (!command.blocks.empty()) {
    std::vector<BlockId> blocks;
    blocks.reserve(command.blocks.size());
    for (int32_t b : command.blocks) blocks.push_back(BlockId(b));
    s = leases_.Check(command.lease_id, blocks).status();
  }
  if (s.ok()) s = leases_.Release(command.lease_id);
  if (command.done) command.done(s);
}

void LlmEngine::Apply(SetPullerCommand& command) {
  // The puller's callbacks come back as commands; the engine outlives every pull (its scheduler
  // drops them before the engine goes).
  scheduler_->SetPuller(std::move(command.puller), [this](uint64_t serial, const KvPullResult& r) {
    Post(PullDoneCommand{serial, r});
  });
}

void LlmEngine::Apply(PullDoneCommand& command) {
  scheduler_->FinishPull(command.serial, command.result);
}

KvHandle LlmEngine::GrantLease(const Sequence& seq) {
  const int block_size = runner_->kv_layout().block_size;
  const size_t n = std::min(seq.blocks.size(),
                            static_cast<size_t>((seq.num_prompt + block_size - 1) / block_size));
  const std::span<const BlockId> blocks(seq.blocks.data(), n);
  const kvcache::KvLease& lease = leases_.Grant(blocks, seq.num_prompt);
  KvHandle handle;
  handle.lease_id = lease.id;
  for (BlockId b : blocks) handle.block_ids.push_back(b.value());
  handle.num_tokens = seq.num_prompt;
  handle.expires_in_ms = options_.kv_lease_ttl.count();
  return handle;
}

void LlmEngine::Apply(CancelCommand& command) {
  std::unique_ptr<Sequence> seq = scheduler_->Remove(command.id);
  if (seq == nullptr) return;  // Unknown or already finished.
  if (seq->num_output() == 0) queued_prefill_tokens_ -= seq->num_prompt;
  RequestOutput out;
  out.finished = true;
  out.finish_reason = FinishReason::kCancelled;
  out.prompt_tokens = seq->num_prompt;
  out.cached_prompt_tokens = seq->cached_prompt_tokens;
  out.queue_seconds = seq->queue_seconds;
  seq->stream->Push(std::move(out));
}

void LlmEngine::Loop() {
  std::vector<Command> commands;
  bool stalled = false;  // The last step could run nothing: wait for a command (a pull's end).
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto ready = [&] {
        return stop_ || !commands_.empty() || (!stalled && scheduler_->has_work());
      };
      if (stalled) {
        cv_.wait_for(lock, std::chrono::milliseconds(5), ready);
      } else if (leases_.size() > 0) {
        // Idle with leases held: wake now and then to expire them.
        cv_.wait_for(lock, std::chrono::milliseconds(50), ready);
      } else {
        cv_.wait(lock, ready);
      }
      if (stop_) break;
      commands.swap(commands_);
    }
    kv_leases_expired_ += leases_.ExpireDue();
    for (Command& command : commands) {
      std::visit([this](auto& c) { Apply(c); }, command);
    }
    commands.clear();
    stalled = scheduler_->has_work() && !Step();
    PublishStats();
  }
  // Shutting down: every request still held ends as cancelled; cancels left have nothing to do.
  std::vector<std::unique_ptr<Sequence>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Command& command : commands_) {
      if (auto* submit = std::get_if<SubmitCommand>(&command)) {
        left.push_back(std::move(submit->seq));
      } else if (auto* release = std::get_if<ReleaseKvCommand>(&command)) {
        // Its leases go with the engine; whoever waits for the answer gets one.
        if (release->done) release->done(UnavailableError("the engine is stopping"));
      }
    }
    commands_.clear();
  }
  for (auto& seq : scheduler_->RemoveAll()) left.push_back(std::move(seq));
  for (auto& seq : left) {
    RequestOutput out;
    out.finished = true;
    out.finish_reason = FinishReason::kCancelled;
    out.prompt_tokens = seq->num_prompt;
    seq->stream->Push(std::move(out));
  }
}

void LlmEngine::Finish(Sequence* seq, FinishReason reason, Status error) {
  RequestOutput out;
  out.finished = true;
  out.finish_reason = reason;
  out.error = std::move(error);
  out.prompt_tokens = seq->num_prompt;
  out.cached_prompt_tokens = seq->cached_prompt_tokens;
  out.queue_seconds = seq->queue_seconds;
  if (seq->num_output() == 0) queued_prefill_tokens_ -= seq->num_prompt;
  std::unique_ptr<Sequence> owned = scheduler_->Remove(seq->id);
  owned->stream->Push(std::move(out));
}

void LlmEngine::PublishStats() {
  blocks_available_ = pool_.num_available();
  kv_leases_ = static_cast<int>(leases_.size());
  running_ = scheduler_->num_running();
  waiting_ = scheduler_->num_waiting();
  const Scheduler::PullStats& pulls = scheduler_->pull_stats();
  kv_pulls_ = pulls.pulls;
  kv_pulled_bytes_ = pulls.bytes;
  kv_pull_seconds_ = pulls.seconds;
  kv_pull_recomputes_ = pulls.recomputes;
}

bool LlmEngine::Step() {
  SchedulerOutput plan = scheduler_->Schedule();
  preemptions_ += plan.num_preempted;
  if (plan.scheduled.empty()) {
    // Nothing runs and the head of the queue still does not fit: it never will.
    if (Sequence* seq = scheduler_->Stuck()) {
      Finish(seq, FinishReason::kError,
             ResourceExhaustedError("request does not fit in the KV block pool"));
      return true;
    }
    if (!scheduler_->loading()) return false;
    // Only prefixes being loaded: wait for one rather than spin.
    scheduler_->WaitForLoads(std::chrono::milliseconds(5));
    return true;
  }

  std::vector<SequenceStep> steps(plan.scheduled.size());
  for (size_t i = 0; i < plan.scheduled.size(); ++i) {
    const ScheduledSequence& s = plan.scheduled[i];
    Sequence* seq = s.seq;
    SequenceStep& step = steps[i];
    step.tokens = std::span<const int32_t>(seq->tokens).subspan(seq->num_computed, s.num_tokens);
    step.start_pos = seq->num_computed;
    step.block_table = seq->blocks;
    step.sample = seq->num_computed + s.num_tokens == static_cast<int>(seq->tokens.size());
    step.logits_from = s.num_tokens;
    if (seq->request.prompt_logits == PromptLogits::kAll &&
        seq->prompt_logits_rows < seq->num_prompt) {
      step.logits_from = std::max(0, seq->prompt_logits_rows - seq->num_computed);
    } else if (seq->request.prompt_logits == PromptLogits::kLast && step.sample &&
               seq->num_output() == 0) {
      step.logits_from = s.num_tokens - 1;
    }
    step.sampling.params = &seq->request.sampling;
    step.sampling.prompt_tokens = std::span<const int32_t>(seq->tokens).first(seq->num_prompt);
    step.sampling.output_tokens = std::span<const int32_t>(seq->tokens).subspan(seq->num_prompt);
    step.sampling.seed = seq->sampling_seed;
  }

  std::vector<SequenceResult> results;
  Status status = runner_->Execute(steps, &results);
  ++steps_;
  if (!status.ok()) {
    spdlog::error("engine step failed error={} sequences={}", Quoted(status.ToString()),
                  plan.scheduled.size());
    for (const ScheduledSequence& s : plan.scheduled) Finish(s.seq, FinishReason::kError, status);
    return true;
  }
  scheduler_->OnStepDone(plan);
  for (size_t i = 0; i < plan.scheduled.size(); ++i) {
    Postprocess(plan.scheduled[i], results[i]);
  }
  // Idle: wait for the offload copies, so that their blocks are back in the pool.
  if (scheduler_->empty()) scheduler_->CollectOffloads(/*wait=*/true);
  onboarded_blocks_ = scheduler_->onboarded_blocks();
  if (tiers_ != nullptr) {
    const kvcache::KvTiersStats t = tiers_->stats();
    std::lock_guard lock(tier_stats_mu_);
    tier_stats_ = t;
  }
  return true;
}

bool LlmEngine::Postprocess(const ScheduledSequence& s, SequenceResult& result) {
  Sequence* seq = s.seq;
  const int vocab = vocab_size();
  if (!result.logits.empty()) {
    // Rows for positions [end - rows, end); keep those that are prompt positions not yet sent.
    const int rows = static_cast<int>(result.logits.size()) / vocab;
    const int end = seq->num_computed;
    for (int r = 0; r < rows; ++r) {
      const int pos = end - rows + r;
      const bool wanted = seq->request.prompt_logits == PromptLogits::kLast
                              ? pos == seq->num_prompt - 1
                              : pos == seq->prompt_logits_rows && pos < seq->num_prompt;
      if (!wanted) continue;
      seq->prompt_logits.insert(seq->prompt_logits.end(), result.logits.begin() + r * vocab,
                                result.logits.begin() + (r + 1) * vocab);
      seq->prompt_logits_rows = pos + 1;
    }
  }
  if (seq->num_computed != static_cast<int>(seq->tokens.size())) return false;  // Mid-prefill.

  const GeneratedToken& tok = result.sampled;
  seq->tokens.push_back(tok.token);
  ++generated_tokens_;
  if (seq->num_output() == 1) {
    cached_prompt_tokens_ += seq->cached_prompt_tokens;
    queued_prefill_tokens_ -= seq->num_prompt;
  }

  const SamplingParams& p = seq->request.sampling;
  FinishReason reason = FinishReason::kNone;
  if (!p.ignore_eos && std::find(eos_ids_.begin(), eos_ids_.end(), tok.token) != eos_ids_.end()) {
    reason = FinishReason::kStop;
  } else if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), tok.token) !=
             p.stop_token_ids.end()) {
    reason = FinishReason::kStop;
  } else if (seq->num_output() >= p.max_tokens ||
             static_cast<int64_t>(seq->tokens.size()) >= max_model_len_) {
    reason = FinishReason::kLength;
  }

  RequestOutput out;
  out.tokens.push_back(tok);
  if (seq->num_output() == 1) {
    out.logits_rows = static_cast<int>(seq->prompt_logits.size()) / vocab;
    out.logits = std::move(seq->prompt_logits);
    seq->prompt_logits.clear();
  }
  out.prompt_tokens = seq->num_prompt;
  out.cached_prompt_tokens = seq->cached_prompt_tokens;
  out.queue_seconds = seq->queue_seconds;
  out.kv_recomputed = seq->kv_recomputed;
  if (reason == FinishReason::kNone) {
    seq->stream->Push(std::move(out));
    return false;
  }
  out.finished = true;
  out.finish_reason = reason;
  // A prefill for a decode worker: its prompt's blocks outlive the request, under a lease.
  if (seq->request.prefill_only && reason == FinishReason::kLength) {
    out.kv_handle = GrantLease(*seq);
  }
  std::unique_ptr<Sequence> owned = scheduler_->Remove(seq->id);
  owned->stream->Push(std::move(out));
  return true;
}

}  // namespace tandem::engine
