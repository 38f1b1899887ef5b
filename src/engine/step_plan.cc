#include "engine/step_plan.h"

#include <algorithm>
#include <string>

namespace tandem::engine {
namespace {

// First chunk index whose logits are computed: the returned ones, and the last when sampling.
int ComputedFrom(const SequenceStep& seq) {
  const int n = static_cast<int>(seq.tokens.size());
  const int returned_from = std::clamp(seq.logits_from, 0, n);
  return seq.sample ? std::min(returned_from, n - 1) : returned_from;
}

}  // namespace

StatusOr<StepPlan> PlanStep(std::span<const SequenceStep> batch, int block_size, int num_blocks,
                            int vocab_size) {
  StepPlan plan;
  plan.first_logits_row.reserve(batch.size());
  for (const SequenceStep& seq : batch) {
    const int64_t end = seq.start_pos + static_cast<int64_t>(seq.tokens.size());
    if (seq.tokens.empty()) return InvalidArgumentError("sequence step with no tokens");
    if (static_cast<int64_t>(seq.block_table.size()) * block_size < end) {
      return InternalError("block table covers " +
                           std::to_string(seq.block_table.size() * block_size) +
                           " tokens, step needs " + std::to_string(end));
    }
    for (BlockId b : seq.block_table) {
      if (b.value() < 0 || b.value() >= num_blocks) return InternalError("block id out of range");
    }
    for (int32_t t : seq.tokens) {
      if (t < 0 || t >= vocab_size) return InvalidArgumentError("token id outside the vocabulary");
    }
    const int n = static_cast<int>(seq.tokens.size());
    plan.first_logits_row.push_back(static_cast<int>(plan.logits_rows.size()));
    for (int i = ComputedFrom(seq); i < n; ++i) plan.logits_rows.push_back(plan.total_tokens + i);
    plan.total_tokens += n;
  }
  return plan;
}

void FillReturnedLogits(std::span<const SequenceStep> batch, const StepPlan& plan,
                        const float* logits, int vocab_size, std::vector<SequenceResult>* results) {
  results->assign(batch.size(), SequenceResult{});
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceStep& seq = batch[s];
    const int n = static_cast<int>(seq.tokens.size());
    const int returned_from = std::clamp(seq.logits_from, 0, n);
    if (returned_from == n) continue;
    const float* base = logits + static_cast<int64_t>(plan.first_logits_row[s]) * vocab_size;
    (*results)[s].logits.assign(
        base + static_cast<int64_t>(returned_from - ComputedFrom(seq)) * vocab_size,
        base + static_cast<int64_t>(n - ComputedFrom(seq)) * vocab_size);
  }
}

bool HasReturnedLogits(std::span<const SequenceStep> batch) {
  return std::ranges::any_of(batch, [](const SequenceStep& seq) {
    return std::clamp(seq.logits_from, 0, static_cast<int>(seq.tokens.size())) <
           static_cast<int>(seq.tokens.size());
  });
}

int LastLogitsRow(const StepPlan& plan, size_t s) {
  const size_t next = s + 1 < plan.first_logits_row.size()
                          ? static_cast<size_t>(plan.first_logits_row[s + 1])
                          : plan.logits_rows.size();
  return static_cast<int>(next) - 1;
}

void FinishStep(std::span<const SequenceStep> batch, const StepPlan& plan, const float* logits,
                int vocab_size, std::vector<SequenceResult>* results) {
  FillReturnedLogits(batch, plan, logits, vocab_size, results);
  std::vector<float> sample_scratch;
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceStep& seq = batch[s];
    if (!seq.sample) continue;
    const float* last = logits + static_cast<int64_t>(LastLogitsRow(plan, s)) * vocab_size;
    (*results)[s].sampled =
        Sample(std::span<const float>(last, vocab_size), seq.sampling, &sample_scratch);
  }
}

}  // namespace tandem::engine
