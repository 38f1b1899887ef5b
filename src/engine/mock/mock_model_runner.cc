#include "engine/mock/mock_model_runner.h"

#include <sys/prctl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "common/status_macros.h"

namespace tandem::engine::mock {
namespace {

class SteadyTime final : public MockTime {
 public:
  int64_t NowNanos() override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void SleepUntil(int64_t nanos) override {
    // The default 50 µs timer slack alone would add ~1% to a 5 ms decode step.
    thread_local const bool slack_set = prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0) == 0;
    (void)slack_set;
    std::this_thread::sleep_until(
        std::chrono::steady_clock::time_point(std::chrono::nanoseconds(nanos)));
  }
};

uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Tokens of context the next token depends on, besides the context's length.
constexpr int kContextWindow = 8;

}  // namespace

MockTime& RealTime() {
  static SteadyTime* time = new SteadyTime();
  return *time;
}

KvLayout MockModelRunner::Layout(const model::ModelConfig& config, int block_size) {
  return KvLayout{.num_layers = config.num_hidden_layers,
                  .num_kv_heads = config.num_key_value_heads,
                  .head_dim = config.head_dim,
                  .block_size = block_size,
                  .element_bytes = 2};
}

size_t MockModelRunner::KvBytesPerBlock(const model::ModelConfig& config, int block_size) {
  return Layout(config, block_size).BlockBytes();
}

StatusOr<std::unique_ptr<MockModelRunner>> MockModelRunner::Create(
    const model::ModelConfig& config, const MockRunnerOptions& options) {
  if (options.num_blocks < 1) return InvalidArgumentError("mock: num_blocks must be >= 1");
  if (options.block_size < 1) return InvalidArgumentError("mock: block_size must be >= 1");
  if (!(options.speedup > 0) || !std::isfinite(options.speedup)) {
    return InvalidArgumentError("--mock-speedup must be a positive number");
  }
  if (config.vocab_size < 2) return InvalidArgumentError("mock: the model has no vocabulary");
  return std::unique_ptr<MockModelRunner>(new MockModelRunner(config, options));
}

MockModelRunner::MockModelRunner(const model::ModelConfig& config, const MockRunnerOptions& options)
    : config_(config),
      options_(options),
      layout_(Layout(config, options.block_size)),
      time_(options.time != nullptr ? options.time : &RealTime()),
      eos_ids_(config.eos_token_ids) {}

int32_t MockModelRunner::NextToken(std::span<const int32_t> prompt,
                                   std::span<const int32_t> output) const {
  const size_t length = prompt.size() + output.size();
  uint64_t h = Mix(options_.seed ^ Mix(length));
  for (size_t i = length - std::min<size_t>(length, kContextWindow); i < length; ++i) {
    const int32_t t = i < prompt.size() ? prompt[i] : output[i - prompt.size()];
    h = Mix(h ^ static_cast<uint32_t>(t));
  }
  const auto vocab = static_cast<uint64_t>(config_.vocab_size);
  auto token = static_cast<int32_t>(h % vocab);
  // Never the end of the sequence: the next id that is not one.
  while (std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end()) {
    token = static_cast<int32_t>((static_cast<uint64_t>(token) + 1) % vocab);
  }
  return token;
}

Status MockModelRunner::Execute(std::span<const SequenceStep> batch,
                                std::vector<SequenceResult>* results) {
  const int64_t start = time_->NowNanos();
  const double step_s = StepSeconds(options_.profile, ShapeOf(batch)) / options_.speedup;
  const auto expected = static_cast<int64_t>(step_s * 1e9);
  results->resize(batch.size());
  const float uniform_logprob = -std::log(static_cast<float>(config_.vocab_size));
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceStep& s = batch[i];
    SequenceResult& r = (*results)[i];
    const int rows =
        static_cast<int>(s.tokens.size()) - std::clamp<int>(s.logits_from, 0, s.tokens.size());
    r.logits.assign(static_cast<size_t>(rows) * config_.vocab_size, 0.0f);
    r.sampled = GeneratedToken{};
    if (!s.sample) continue;
    r.sampled.token = NextToken(s.sampling.prompt_tokens, s.sampling.output_tokens);
    const SamplingParams* params = s.sampling.params;
    if (params != nullptr && params->logprobs) {
      r.sampled.logprob = uniform_logprob;
      for (int k = 0; k < params->top_logprobs; ++k) {
        r.sampled.top_logprobs.push_back(
            TokenLogprob{.token = static_cast<int32_t>((r.sampled.token + k) % config_.vocab_size),
                         .logprob = uniform_logprob});
      }
    }
  }
  // Late steps before this one are paid back by ending this one up to half its length early.
  const int64_t payback = std::min(debt_ns_, expected / 2);
  time_->SleepUntil(start + expected - payback);
  const int64_t took = time_->NowNanos() - start;
  debt_ns_ = std::max<int64_t>(0, debt_ns_ + took - expected);
  expected_ns_.fetch_add(expected, std::memory_order_relaxed);
  actual_ns_.fetch_add(took, std::memory_order_relaxed);
  steps_.fetch_add(1, std::memory_order_relaxed);
  return OkStatus();
}

Status MockModelRunner::CopyBlocksOut(std::span<const BlockId> blocks,
                                      std::span<std::byte* const> dst) {
  if (blocks.size() != dst.size()) return InvalidArgumentError("mock: copy spans differ");
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].value() < 0 || blocks[i].value() >= options_.num_blocks) {
      return InvalidArgumentError("mock: block out of range");
    }
    const int64_t marker = blocks[i].value();
    std::memcpy(dst[i], &marker, sizeof(marker));
  }
  return OkStatus();
}

Status MockModelRunner::CopyBlocksIn(std::span<const BlockId> blocks,
                                     std::span<const std::byte* const> src) {
  if (blocks.size() != src.size()) return InvalidArgumentError("mock: copy spans differ");
  for (const BlockId b : blocks) {
    if (b.value() < 0 || b.value() >= options_.num_blocks) {
      return InvalidArgumentError("mock: block out of range");
    }
  }
  return OkStatus();
}

StatusOr<uint64_t> MockModelRunner::BeginCopyBlocksOut(std::span<const BlockId> blocks,
                                                       std::span<std::byte* const> dst) {
  TANDEM_RETURN_IF_ERROR(CopyBlocksOut(blocks, dst));
  finished_.push_back(next_ticket_);
  return next_ticket_++;
}

StatusOr<std::vector<uint64_t>> MockModelRunner::FinishedCopies(bool /*wait*/) {
  std::vector<uint64_t> done;
  done.swap(finished_);
  return done;
}

std::optional<SimulationStats> MockModelRunner::simulation_stats() const {
  return SimulationStats{.expected_seconds = expected_ns_.load(std::memory_order_relaxed) * 1e-9,
                         .actual_seconds = actual_ns_.load(std::memory_order_relaxed) * 1e-9,
                         .steps = steps_.load(std::memory_order_relaxed)};
}

}  // namespace tandem::engine::mock
