// The cuda backend: bf16 Llama-family forward pass on one GPU over a paged KV pool in the
// block-major layout (ARCHITECTURE §3), matrix products through cuBLASLt, the kernels of
// kernels.h. Numerics: bf16 weights, activations and KV; fp32 accumulation everywhere; the
// residual stream stays fp32 (as the CPU oracle's), and logits come back as fp32. Sampling runs
// on the host with the CPU backend's Sample() (GPU sampling is the next step).
//
// Thread safety: not thread-safe (engine thread only). All device work runs on the runner's own
// stream; Execute returns after the step's logits are on the host.
#pragma once

#include <memory>
#include <vector>

#include "engine/cuda/cuda_util.h"
#include "engine/cuda/gemm.h"
#include "engine/model_runner.h"
#include "engine/rope.h"
#include "model/weight_source.h"

namespace tandem::engine::cuda {

struct CudaRunnerOptions {
  int num_blocks = 256;  // KV blocks to allocate on the device.
  int block_size = 16;   // Tokens per block.
  int device = 0;        // CUDA device ordinal.
};

class CudaModelRunner final : public ModelRunner {
 public:
  // Converts every tensor of `config` from `weights` to bf16 on the device (norm weights and
  // biases stay fp32) and allocates the KV pool. Fails without a device.
  static StatusOr<std::unique_ptr<CudaModelRunner>> Create(const model::ModelConfig& config,
                                                           const model::WeightSource& weights,
                                                           const CudaRunnerOptions& options);
  ~CudaModelRunner() override;

  const model::ModelConfig& config() const override { return config_; }
  const KvLayout& kv_layout() const override { return layout_; }
  int num_blocks() const override { return num_blocks_; }
  Status Execute(std::span<const SequenceStep> batch,
                 std::vector<SequenceResult>* results) override;

  // Bytes of the device KV pool one block needs (bf16).
  static size_t KvBytesPerBlock(const model::ModelConfig& config, int block_size);

 private:
  struct Layer {
    DeviceBuffer input_norm;  // f32 [hidden]
    DeviceBuffer qkv;         // bf16 [q_dim + 2 kv_dim, hidden]
    DeviceBuffer qkv_bias;    // f32, empty without attention_bias
    DeviceBuffer o;           // bf16 [hidden, q_dim]
    DeviceBuffer o_bias;
    DeviceBuffer post_norm;
    DeviceBuffer gate_up;  // bf16 [2 inter, hidden]: gate then up
    DeviceBuffer gate_up_bias;
    DeviceBuffer down;  // bf16 [hidden, inter]
    DeviceBuffer down_bias;
  };

  CudaModelRunner(const model::ModelConfig& config, const CudaRunnerOptions& options);
  Status LoadWeights(const model::WeightSource& weights);
  Status Reserve(int rows, int wanted, size_t meta_ints, size_t freq_floats);

  model::ModelConfig config_;
  KvLayout layout_;
  int num_blocks_;
  int device_;
  Rope rope_;
  int q_dim_;
  int kv_dim_;

  CudaStream stream_;
  std::unique_ptr<Gemm> gemm_;

  DeviceBuffer embed_;  // bf16 [vocab, hidden]
  std::vector<Layer> layers_;
  DeviceBuffer final_norm_;
  DeviceBuffer lm_head_;  // bf16 [vocab, hidden]; empty when tied to embed_
  DeviceBuffer kv_;       // bf16, num_blocks × BlockElements
  DeviceBuffer freqs_;    // f32: the shared inv_freq table, then this step's per-sequence ones

  // Per-step buffers, grown on demand.
  DeviceBuffer meta_;     // int32: tokens, positions, row blocks, freq offsets, table offsets,
                          // block tables, wanted rows
  DeviceBuffer x_;        // f32 [rows, hidden]: the residual stream
  DeviceBuffer h_;        // bf16 [rows, hidden]
  DeviceBuffer qkv_;      // bf16 [rows, q_dim + 2 kv_dim]
  DeviceBuffer attn_;     // bf16 [rows, q_dim]
  DeviceBuffer delta_;    // bf16 [rows, hidden]: o_proj / down_proj output
  DeviceBuffer gate_up_;  // bf16 [rows, 2 inter]
  DeviceBuffer act_;      // bf16 [rows, inter]
  DeviceBuffer normed_;   // bf16 [wanted, hidden]
  DeviceBuffer logits_;   // f32 [wanted, vocab]
  size_t shared_freq_floats_ = 0;
  std::vector<int32_t> host_meta_;
  std::vector<float> host_freqs_;
  std::vector<float> host_logits_;
};

}  // namespace tandem::engine::cuda
