// The CPU backend: fp32 Llama-family forward pass over a paged KV cache in the block-major
// layout, matrix products through OpenBLAS. It is the oracle the CUDA backend is tested against,
// and serves tiny models.
//
// Thread safety: not thread-safe (engine thread only); it parallelises internally (OpenMP,
// OpenBLAS threads).
#pragma once

#include <memory>
#include <vector>

#include "engine/model_runner.h"
#include "engine/rope.h"
#include "model/weight_source.h"

namespace tandem::engine::cpu {

struct CpuRunnerOptions {
  int num_blocks = 256;  // KV blocks to allocate.
  int block_size = 16;   // Tokens per block.
};

class CpuModelRunner final : public ModelRunner {
 public:
  // Loads every tensor of `config` from `weights` (converted to fp32) and allocates the KV pool.
  static StatusOr<std::unique_ptr<CpuModelRunner>> Create(const model::ModelConfig& config,
                                                          const model::WeightSource& weights,
                                                          const CpuRunnerOptions& options);

  const model::ModelConfig& config() const override { return config_; }
  const KvLayout& kv_layout() const override { return layout_; }
  std::optional<KvMemory> kv_memory() const override {
    return KvMemory{.base = const_cast<float*>(kv_.data()), .bytes = kv_.size() * sizeof(float)};
  }
  int num_blocks() const override { return num_blocks_; }
  Status Execute(std::span<const SequenceStep> batch,
                 std::vector<SequenceResult>* results) override;
  Status CopyBlocksOut(std::span<const BlockId> blocks,
                       std::span<std::byte* const> dst) override;
  Status CopyBlocksIn(std::span<const BlockId> blocks,
                      std::span<const std::byte* const> src) override;
  StatusOr<uint64_t> BeginCopyBlocksOut(std::span<const BlockId> blocks,
                                        std::span<std::byte* const> dst) override;
  StatusOr<std::vector<uint64_t>> FinishedCopies(bool wait) override;

  // Bytes of the KV pool a block count needs (for sizing from a memory budget).
  static size_t KvBytesPerBlock(const model::ModelConfig& config, int block_size);

 private:
  struct Layer {
    std::vector<float> input_norm;
    std::vector<float> qkv;  // [q_dim + 2 * kv_dim, hidden]: q, k, v stacked.
    std::vector<float> qkv_bias;
    std::vector<float> o;
    std::vector<float> o_bias;
    std::vector<float> post_norm;
    std::vector<float> gate_up;  // [2 * intermediate, hidden]: gate then up.
    std::vector<float> gate_up_bias;
    std::vector<float> down;
    std::vector<float> down_bias;
  };

  CpuModelRunner(const model::ModelConfig& config, const CpuRunnerOptions& options);
  Status LoadWeights(const model::WeightSource& weights);
  void Attention(std::span<const SequenceStep> batch, int layer, float* qkv,
                 std::span<const std::span<const float>> inv_freqs, float* out);
  float* KvSlot(BlockId block, int layer, int kv, int slot);

  model::ModelConfig config_;
  KvLayout layout_;
  int num_blocks_;
  Rope rope_;
  int q_dim_;
  int kv_dim_;

  std::vector<float> embed_;
  std::vector<Layer> layers_;
  std::vector<float> final_norm_;
  std::vector<float> lm_head_;  // Empty when tied to embed_.
  std::vector<float> kv_;       // num_blocks * BlockElements.
  uint64_t next_ticket_ = 1;
  std::vector<uint64_t> finished_;  // copies are done at once: tickets not yet reported

  // Activations, reused between steps.
  std::vector<float> x_, h_, qkv_, attn_, tmp_, gate_up_, act_;
};

}  // namespace tandem::engine::cpu
