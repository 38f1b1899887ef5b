// The cuda backend: bf16 Llama-family forward pass on one GPU over a paged KV pool in the
// block-major layout (ARCHITECTURE §3), matrix products through cuBLASLt, the kernels of
// kernels.h. Numerics: bf16 weights, activations and KV; fp32 accumulation everywhere; the
// residual stream stays fp32 (as the CPU oracle's); logits are fp32. Sampling runs on the device
// (GpuSampler); only sampled tokens, and logits rows a request asked for, come back to the host.
//
// Decode-only steps run as CUDA graphs captured per (batch bucket, decode split bucket); other
// steps launch the same kernels directly. Attention: tensor-core prefill and split-KV decode
// kernels for head_dim 64 and 128, the simple paged kernel otherwise.
//
// Thread safety: not thread-safe (engine thread only). All device work runs on the runner's own
// stream; Execute returns after the step's results are on the host (the one synchronisation).
#pragma once

#include <map>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <cuda_bf16.h>

#include "engine/cuda/cuda_util.h"
#include "engine/cuda/gemm.h"
#include "engine/cuda/gpu_sampler.h"
#include "engine/model_runner.h"
#include "engine/rope.h"
#include "model/weight_source.h"

namespace tandem::engine::cuda {

struct CudaRunnerOptions {
  int num_blocks = 256;        // KV blocks to allocate on the device.
  int block_size = 16;         // Tokens per block.
  int device = 0;              // CUDA device ordinal.
  bool cuda_graphs = true;     // Decode steps through captured graphs.
  int max_graph_batch = 256;   // Larger decode batches launch directly.
  bool fast_attention = true;  // false: the simple paged kernel everywhere (reference runs).
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
  // The blocks BlockIds index (the trash block after them is the runner's own).
  std::optional<KvMemory> kv_memory() const override {
    return KvMemory{.base = kv_.data(),
                    .bytes = static_cast<size_t>(num_blocks()) * kv_layout().BlockBytes(),
                    .device = true,
                    .device_index = device_};
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
  kvcache::HostAllocator* host_allocator() override { return pinned_.get(); }

  // Bytes of the device KV pool one block needs (bf16).
  static size_t KvBytesPerBlock(const model::ModelConfig& config, int block_size);

  // Fills the whole KV pool with seeded random bf16 values in (-1, 1): benchmarks time decode
  // steps over long contexts without computing them first (never over zeros).
  Status FillKvRandom(uint64_t seed);

  // Graphs captured so far (for tests and benchmarks).
  int num_graphs() const { return static_cast<int>(graphs_.size()); }

 private:
  Status CopyBlocks(std::span<const BlockId> blocks, std::byte* const* host, bool to_pool);
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

  // Device pointers into the uploaded StepLayout, and the launch shapes derived from it.
  struct StepArgs;

  CudaModelRunner(const model::ModelConfig& config, const CudaRunnerOptions& options);
  Status LoadWeights(const model::WeightSource& weights);
  StatusOr<DeviceBuffer> UploadParts(
      const model::WeightSource& source,
      const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts, bool bf16);
  // Grows the per-step buffers; bumps generation_ when one moves (captured graphs then refer to
  // freed memory and are dropped).
  Status Reserve(int rows, int wanted, size_t meta_ints, size_t freq_floats, size_t decode_floats);
  // Enqueues embedding → logits for the uploaded step (no host work, no synchronisation: safe to
  // capture).
  Status EnqueueForward(const StepArgs& args, cudaStream_t stream);
  int DecodeSplits(int max_context) const;
  // The params every attention kernel shares (q, out, this layer's KV planes, heads, window,
  // scale), for layer `layer`.
  template <typename Params>
  Params AttentionCommon(int layer) const;

  model::ModelConfig config_;
  KvLayout layout_;
  int num_blocks_;
  int device_;
  Rope rope_;
  int q_dim_;
  int kv_dim_;

  CudaRunnerOptions options_;
  bool fast_attention_ = false;
  int prefill_tile_rows_ = 0;
  CudaStream stream_;
  std::unique_ptr<kvcache::HostAllocator> pinned_ = std::make_unique<PinnedHostAllocator>();
  // Offload copies: their own stream, and per ticket the event that marks its end.
  CudaStream copy_stream_;
  struct Copy {
    uint64_t ticket;
    CudaEvent done;
  };
  std::deque<Copy> copies_;
  uint64_t next_ticket_ = 1;
  std::unique_ptr<Gemm> gemm_;
  std::unique_ptr<GpuSampler> sampler_;
  // Graphs by (padded rows, decode splits), valid while generation_ equals their capture's.
  struct Graph {
    CudaGraph graph;
    uint64_t generation = 0;
  };
  std::map<std::pair<int, int>, Graph> graphs_;
  uint64_t generation_ = 0;

  DeviceBuffer embed_;  // bf16 [vocab, hidden]
  std::vector<Layer> layers_;
  DeviceBuffer final_norm_;
  DeviceBuffer lm_head_;  // bf16 [vocab, hidden]; empty when tied to embed_
  DeviceBuffer kv_;       // bf16, (num_blocks + 1) × BlockElements: the last is the trash block
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
  DeviceBuffer decode_workspace_;  // f32, the split-KV decode kernel's partial results
  size_t shared_freq_floats_ = 0;
  std::vector<float> host_logits_;
  std::vector<GeneratedToken> sampled_;
};

}  // namespace tandem::engine::cuda
