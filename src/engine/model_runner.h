// The model-execution interface every backend implements (cpu now, cuda next). The scheduler
// decides what runs; a ModelRunner runs one step of it: for each sequence in the batch, it
// appends the KV of the step's tokens to the sequence's blocks, and returns logits and a sampled
// token where asked.
//
// Thread safety: not thread-safe; called only from the engine thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "engine/sampler.h"
#include "kvcache/host_store.h"
#include "model/model_config.h"
#include "tandem/engine.h"
#include "tandem/ids.h"
#include "tandem/kv_layout.h"
#include "tandem/status.h"

namespace tandem::engine {

// One sequence's share of a step.
struct SequenceStep {
  // The tokens to run now: a prefill chunk, or the one token of a decode step.
  std::span<const int32_t> tokens;
  // Position of tokens[0]: the number of tokens whose KV is already in the blocks.
  int64_t start_pos = 0;
  // Blocks covering positions [0, start_pos + tokens.size()), in order.
  std::span<const BlockId> block_table;
  // Return logits rows for tokens[logits_from..]; tokens.size() returns none.
  int logits_from = 0;
  // Sample a token from the last token's logits with this context.
  bool sample = false;
  SamplingContext sampling;
};

struct SequenceResult {
  // Raw logits, row-major [tokens.size() - logits_from][vocab].
  std::vector<float> logits;
  // The sampled token, when SequenceStep::sample.
  GeneratedToken sampled;
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;

  virtual const model::ModelConfig& config() const = 0;
  virtual const KvLayout& kv_layout() const = 0;
  // Blocks of KV memory this runner owns; BlockIds index them.
  virtual int num_blocks() const = 0;
  // Where those blocks live (block b at base + b × kv_layout().BlockBytes()); nullopt when the
  // runner has no KV memory (mock).
  virtual std::optional<KvMemory> kv_memory() const { return std::nullopt; }

  // Runs one step. `results` is resized to batch.size(). A failure leaves the KV of the step's
  // tokens unspecified (the caller fails or recomputes those sequences).
  virtual Status Execute(std::span<const SequenceStep> batch,
                         std::vector<SequenceResult>* results) = 0;

  // Copies blocks[i] of the KV pool (kv_layout().BlockBytes() each: every layer's K and V) out to
  // host memory at dst[i], or in from src[i]: how the host and disk tiers take and give back
  // blocks. Complete on return, and ordered with the runner's steps.
  virtual Status CopyBlocksOut(std::span<const BlockId> blocks,
                               std::span<std::byte* const> dst) = 0;
  virtual Status CopyBlocksIn(std::span<const BlockId> blocks,
                              std::span<const std::byte* const> src) = 0;
  // Offload without stalling steps: queues copies of blocks[i] → dst[i] behind every step run so
  // far, on a stream of their own (cuda; at once elsewhere), and returns a ticket. The blocks
  // must not be written, nor dst reused, until FinishedCopies has returned the ticket.
  virtual StatusOr<uint64_t> BeginCopyBlocksOut(std::span<const BlockId> blocks,
                                                std::span<std::byte* const> dst) = 0;
  // Tickets of BeginCopyBlocksOut whose copies have completed since the last call, in order;
  // with `wait`, after every copy begun has completed.
  virtual StatusOr<std::vector<uint64_t>> FinishedCopies(bool wait) = 0;
  // Host memory the runner copies blocks from and to fastest (pinned, on cuda); null: any.
  virtual kvcache::HostAllocator* host_allocator() { return nullptr; }
  // Simulated backends only (nullopt elsewhere). Unlike the rest, callable from any thread.
  virtual std::optional<SimulationStats> simulation_stats() const { return std::nullopt; }
};

}  // namespace tandem::engine
