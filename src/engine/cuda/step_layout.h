// The host side of one cuda step: everything the kernels read about the batch (tokens, positions,
// KV slots, block tables, which rows attend as decode queries and which as prefill chunks, the
// prefill kernel's tile list), packed into one int32 array that is uploaded in one copy, plus the
// extra RoPE tables of sequences whose frequencies depend on their length (dynamic NTK).
//
// A step is "padded" to a CUDA-graph bucket when `pad_rows` > 0: decode-only batches get exactly
// pad_rows rows whose section offsets depend only on pad_rows, so a graph captured for the bucket
// reads the right places; padding rows run token 0 at position 0 into a trash block.
//
// Thread safety: pure functions over their arguments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/model_runner.h"
#include "engine/rope.h"
#include "engine/step_plan.h"
#include "tandem/status.h"

namespace tandem::engine::cuda {

struct StepLayout {
  std::vector<int32_t> ints;  // the upload; sections below are offsets into it (in ints)
  std::vector<float> freqs;   // [shared table, extra tables...]; empty when none is extra

  int rows = 0;         // token rows, padding included
  // Rows of single-token sequences (padding included): rows [0, num_single_rows). Prefill
  // chunks' rows follow; each group keeps batch order.
  int num_single_rows = 0;
  int num_wanted = 0;   // logits rows
  int num_decode = 0;   // single-token sequences (decode kernel), padding included
  int num_prefill = 0;  // multi-token sequences (prefill kernel)
  int num_tiles = 0;    // prefill kernel work items
  int max_context = 0;  // longest context of a decode query (position + 1)

  // Per row.
  size_t tokens = 0, positions = 0, row_block = 0, freq_offset = 0, table_offset = 0;
  // Per logits row: the token row it reads.
  size_t wanted = 0;
  // Per decode sequence: its row, query position and block-table offset.
  size_t decode_rows = 0, decode_positions = 0, decode_tables = 0;
  // Per prefill sequence: first row, number of rows, position of the first row, table offset.
  size_t prefill_row_start = 0, prefill_num_rows = 0, prefill_start_pos = 0, prefill_tables = 0;
  // Prefill tiles: (prefill sequence index, first row within it) pairs.
  size_t tiles = 0;
  // Block tables of every sequence, then the one-entry table of padding rows.
  size_t tables = 0;
};

struct StepLayoutOptions {
  int block_size = 16;
  int trash_block = 0;        // a pool block no sequence owns (padding rows write there)
  int prefill_tile_rows = 0;  // 0: no prefill kernel (every row goes to the decode list's
                              // fallback, the simple kernel reads per-row arrays only)
  int pad_rows = 0;           // > 0: decode-only batch padded to this many rows
};

// Builds the layout of `batch` (already checked by PlanStep).
StatusOr<StepLayout> BuildStepLayout(std::span<const SequenceStep> batch, const StepPlan& plan,
                                     const Rope& rope, const StepLayoutOptions& options);

}  // namespace tandem::engine::cuda
