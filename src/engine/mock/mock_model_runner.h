// The mock backend (`--backend mock`): a ModelRunner that does no math. Everything around it is
// real — the scheduler, block pool, prefix cache, tiers and KV events of the engine — and each
// step takes the time the timing model predicts for the cuda backend, so one small machine can
// run many workers that behave like GPU workers (ARCHITECTURE §3 "Engine").
//
// Output tokens are a pure function of the seed and the sequence's last tokens and length, so
// runs are reproducible whatever the batching. The runner never emits an end-of-sequence token:
// requests end at their length limit (or a stop string). Logits, where asked, are all zero (the
// uniform distribution); logprobs are those of that distribution.
//
// Time: a step of predicted length d returns d / speedup after it began. A step that returns
// late (the machine is busy, the timer overshoots) shortens the next ones until the debt is paid,
// so timer jitter does not accumulate; what remains is slip — real time spent beyond simulated
// time — reported by simulation_stats().
//
// Thread safety: Execute and the copies on the engine thread only; simulation_stats() from any
// thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "engine/mock/timing_model.h"
#include "engine/model_runner.h"

namespace tandem::engine::mock {

// Time as the runner sees it; tests inject a fake one (no sleeps).
class MockTime {
 public:
  virtual ~MockTime() = default;
  virtual int64_t NowNanos() = 0;
  virtual void SleepUntil(int64_t nanos) = 0;
};

// steady_clock, and a sleep with 1 µs timer slack on the calling thread.
MockTime& RealTime();

struct MockRunnerOptions {
  int num_blocks = 256;      // KV blocks the pool has (no memory behind them).
  int block_size = 16;       // Tokens per block.
  MockProfile profile = {};  // Step times.
  double speedup = 1.0;      // Simulated time runs this many times faster than real time.
  uint64_t seed = 0;         // Output tokens' seed.
  MockTime* time = nullptr;  // Not owned; null: RealTime().
};

class MockModelRunner final : public ModelRunner {
 public:
  static StatusOr<std::unique_ptr<MockModelRunner>> Create(const model::ModelConfig& config,
                                                           const MockRunnerOptions& options);

  const model::ModelConfig& config() const override { return config_; }
  // The layout the cuda backend would have (bf16), so sizes reported are the real ones.
  const KvLayout& kv_layout() const override { return layout_; }
  int num_blocks() const override { return options_.num_blocks; }
  Status Execute(std::span<const SequenceStep> batch,
                 std::vector<SequenceResult>* results) override;
  // Block contents do not exist: copies out fill the destination with a marker of the block,
  // copies in check nothing.
  Status CopyBlocksOut(std::span<const BlockId> blocks, std::span<std::byte* const> dst) override;
  Status CopyBlocksIn(std::span<const BlockId> blocks,
                      std::span<const std::byte* const> src) override;
  StatusOr<uint64_t> BeginCopyBlocksOut(std::span<const BlockId> blocks,
                                        std::span<std::byte* const> dst) override;
  StatusOr<std::vector<uint64_t>> FinishedCopies(bool wait) override;
  std::optional<SimulationStats> simulation_stats() const override;

  // The token the runner emits after `context` (prompt then output so far): exposed for tests.
  int32_t NextToken(std::span<const int32_t> prompt, std::span<const int32_t> output) const;

  // Bytes a block would take on the cuda backend (bf16), for sizing the pool from a budget.
  static size_t KvBytesPerBlock(const model::ModelConfig& config, int block_size);

 private:
  MockModelRunner(const model::ModelConfig& config, const MockRunnerOptions& options);
  static KvLayout Layout(const model::ModelConfig& config, int block_size);

  model::ModelConfig config_;
  MockRunnerOptions options_;
  KvLayout layout_;
  MockTime* time_;
  std::vector<int32_t> eos_ids_;
  int64_t debt_ns_ = 0;  // Lateness not yet paid back by shorter steps.
  uint64_t next_ticket_ = 1;
  std::vector<uint64_t> finished_;
  std::atomic<int64_t> expected_ns_{0};  // Σ predicted step time, real (÷ speedup).
  std::atomic<int64_t> actual_ns_{0};    // Σ real time the steps took.
  std::atomic<int64_t> steps_{0};
};

}  // namespace tandem::engine::mock
