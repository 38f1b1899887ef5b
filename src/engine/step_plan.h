// What every backend derives from a step's batch before running it (validation, which rows need
// logits) and does with the logits afterwards (results and sampling), so backends differ only in
// how they compute.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/model_runner.h"
#include "tandem/status.h"

namespace tandem::engine {

struct StepPlan {
  int total_tokens = 0;  // Tokens of all sequences, concatenated in batch order.
  // For each logits row, the index of its token in the concatenated tokens: each sequence's
  // tokens from logits_from on, and its last token when it samples.
  std::vector<int32_t> logits_rows;
  // For each sequence, the index in logits_rows of its first row.
  std::vector<int> first_logits_row;
};

// Checks the batch against a pool of `num_blocks` blocks of `block_size` tokens and a vocabulary
// of `vocab_size` ids (empty steps, short block tables, ids out of range), and plans the rows.
StatusOr<StepPlan> PlanStep(std::span<const SequenceStep> batch, int block_size, int num_blocks,
                            int vocab_size);

// Resizes `results` to the batch and fills each sequence's returned logits rows from `logits`
// (row-major [plan.logits_rows.size()][vocab_size]); `logits` may be null when no sequence
// returns any (HasReturnedLogits false).
void FillReturnedLogits(std::span<const SequenceStep> batch, const StepPlan& plan,
                        const float* logits, int vocab_size, std::vector<SequenceResult>* results);

// True when some sequence of the batch returns logits rows.
bool HasReturnedLogits(std::span<const SequenceStep> batch);

// The logits row (index into plan.logits_rows) of sequence `s`'s last token.
int LastLogitsRow(const StepPlan& plan, size_t s);

// Fills `results` from `logits` (row-major [plan.logits_rows.size()][vocab_size]) and samples the
// sequences that asked for it.
void FinishStep(std::span<const SequenceStep> batch, const StepPlan& plan, const float* logits,
                int vocab_size, std::vector<SequenceResult>* results);

}  // namespace tandem::engine
