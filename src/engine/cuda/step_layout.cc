#include "engine/cuda/step_layout.h"

#include <algorithm>

namespace tandem::engine::cuda {

StatusOr<StepLayout> BuildStepLayout(std::span<const SequenceStep> batch, const StepPlan& plan,
                                     const Rope& rope, const StepLayoutOptions& options) {
  StepLayout out;
  const int bs = options.block_size;
  const bool padded = options.pad_rows > 0;
  const bool split_kinds = options.prefill_tile_rows > 0;

  int decode = 0;
  int prefill = 0;
  int tiles = 0;
  size_t table_ints = 0;
  for (const SequenceStep& seq : batch) {
    const int n = static_cast<int>(seq.tokens.size());
    if (n == 1 || !split_kinds) {
      decode += n;
    } else {
      ++prefill;
      tiles += (n + options.prefill_tile_rows - 1) / options.prefill_tile_rows;
    }
    table_ints += seq.block_table.size();
  }
  if (padded) {
    if (prefill > 0 || plan.total_tokens > options.pad_rows ||
        plan.logits_rows.size() != batch.size()) {
      return InternalError("padded cuda step needs a decode-only batch of at most pad_rows");
    }
  }
  out.rows = padded ? options.pad_rows : plan.total_tokens;
  out.num_wanted = padded ? options.pad_rows : static_cast<int>(plan.logits_rows.size());
  out.num_decode = padded ? options.pad_rows : decode;
  out.num_prefill = prefill;
  out.num_tiles = tiles;

  // Sections, in upload order.
  size_t at = 0;
  const auto section = [&at](size_t count) {
    const size_t offset = at;
    at += count;
    return offset;
  };
  const size_t rows = out.rows;
  out.tokens = section(rows);
  out.positions = section(rows);
  out.row_block = section(rows);
  out.freq_offset = section(rows);
  out.table_offset = section(rows);
  out.wanted = section(out.num_wanted);
  out.decode_rows = section(out.num_decode);
  out.decode_positions = section(out.num_decode);
  out.decode_tables = section(out.num_decode);
  out.prefill_row_start = section(prefill);
  out.prefill_num_rows = section(prefill);
  out.prefill_start_pos = section(prefill);
  out.prefill_tables = section(prefill);
  out.tiles = section(2 * static_cast<size_t>(tiles));
  out.tables = section(table_ints + 1);
  out.ints.assign(at, 0);
  int32_t* v = out.ints.data();
  const auto trash_table = static_cast<int32_t>(table_ints);  // relative to the tables section
  v[out.tables + table_ints] = options.trash_block;

  // Rows of single-token sequences first (decode queries, and the rows the skinny matrix
  // kernel takes), then the prefill chunks, each group in batch order.
  std::vector<int> first_row(batch.size());
  {
    int next = 0;
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t s = 0; s < batch.size(); ++s) {
        const int n = static_cast<int>(batch[s].tokens.size());
        if ((n == 1) == (pass == 0)) {
          first_row[s] = next;
          next += n;
        }
      }
    }
  }
  std::vector<int32_t> new_row_of(plan.total_tokens);
  std::vector<float> scratch;
  int orig = 0;
  int d = 0;
  int p = 0;
  int tile = 0;
  int32_t t = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceStep& seq = batch[s];
    const int n = static_cast<int>(seq.tokens.size());
    const std::span<const float> inv =
        rope.InvFreq(seq.start_pos + static_cast<int64_t>(n), &scratch);
    int32_t fo = 0;
    if (!scratch.empty() && inv.data() == scratch.data()) {
      if (out.freqs.empty()) {
        std::vector<float> shared_scratch;
        const std::span<const float> shared = rope.InvFreq(0, &shared_scratch);
        out.freqs.assign(shared.begin(), shared.end());
      }
      fo = static_cast<int32_t>(out.freqs.size());
      out.freqs.insert(out.freqs.end(), inv.begin(), inv.end());
      scratch.clear();
    }
    for (size_t b = 0; b < seq.block_table.size(); ++b) {
      v[out.tables + t + b] = seq.block_table[b].value();
    }
    const bool is_decode = n == 1 || !split_kinds;
    if (!is_decode) {
      v[out.prefill_row_start + p] = first_row[s];
      v[out.prefill_num_rows + p] = n;
      v[out.prefill_start_pos + p] = static_cast<int32_t>(seq.start_pos);
      v[out.prefill_tables + p] = t;
      // Late rows first: they attend to the most keys, and tiles start in list order.
      const int last = (n - 1) / options.prefill_tile_rows * options.prefill_tile_rows;
      for (int r0 = last; r0 >= 0; r0 -= options.prefill_tile_rows, ++tile) {
        v[out.tiles + 2 * tile] = p;
        v[out.tiles + 2 * tile + 1] = r0;
      }
      ++p;
    }
    for (int i = 0; i < n; ++i, ++orig) {
      const int r = first_row[s] + i;
      new_row_of[orig] = r;
      const int64_t pos = seq.start_pos + i;
      v[out.tokens + r] = seq.tokens[i];
      v[out.positions + r] = static_cast<int32_t>(pos);
      v[out.row_block + r] = seq.block_table[pos / bs].value();
      v[out.freq_offset + r] = fo;
      v[out.table_offset + r] = t;
      if (n == 1) ++out.num_single_rows;
      if (is_decode) {
        v[out.decode_rows + d] = r;
        v[out.decode_positions + d] = static_cast<int32_t>(pos);
        v[out.decode_tables + d] = t;
        out.max_context = std::max(out.max_context, static_cast<int>(pos) + 1);
        ++d;
      }
    }
    t += static_cast<int32_t>(seq.block_table.size());
  }
  int r = plan.total_tokens;
  if (padded) {
    // Padding rows: token 0 at position 0 into the trash block, its own one-entry table.
    for (; r < out.rows; ++r, ++d) {
      v[out.row_block + r] = options.trash_block;
      v[out.table_offset + r] = trash_table;
      v[out.decode_rows + d] = r;
      v[out.decode_tables + d] = trash_table;
    }
    for (int w = 0; w < out.num_wanted; ++w) v[out.wanted + w] = w;
    out.num_single_rows = out.rows;
  } else {
    for (int w = 0; w < out.num_wanted; ++w) v[out.wanted + w] = new_row_of[plan.logits_rows[w]];
  }
  out.max_context = std::max(out.max_context, 1);
  return out;
}

}  // namespace tandem::engine::cuda
