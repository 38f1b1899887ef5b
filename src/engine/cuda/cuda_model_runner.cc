#include "engine/cuda/cuda_model_runner.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "common/status_macros.h"
#include "engine/cuda/decode_attention.h"
#include "engine/cuda/kernels.h"
#include "engine/cuda/prefill_attention.h"
#include "engine/cuda/step_layout.h"
#include "engine/step_plan.h"
#include "model/tensor.h"

namespace tandem::engine::cuda {
namespace {

constexpr int kDecodeSplitTokens = 128;  // decode kernel: keys per split (a sequence's
                                         // partition depends on its own length only)
constexpr int kGraphBuckets[] = {1,  2,  4,   8,   16,  24,  32,  48, 64,
                                 80, 96, 112, 128, 160, 192, 224, 256};

int GraphBucket(int n) {
  for (int b : kGraphBuckets) {
    if (b >= n) return b;
  }
  return 0;
}

size_t RoundUpPow2(size_t n) {
  size_t p = 1;
  while (p < n) p *= 2;
  return p;
}

}  // namespace

struct CudaModelRunner::StepArgs {
  int rows = 0;
  int num_wanted = 0;
  int num_decode = 0;
  int num_tiles = 0;
  int single_rows = 0;
  int decode_splits = 1;
  const int32_t* tokens = nullptr;
  const int32_t* positions = nullptr;
  const int32_t* row_block = nullptr;
  const int32_t* freq_offset = nullptr;
  const int32_t* table_offset = nullptr;
  const int32_t* wanted = nullptr;
  const int32_t* decode_rows = nullptr;
  const int32_t* decode_positions = nullptr;
  const int32_t* decode_tables = nullptr;
  const int32_t* prefill_row_start = nullptr;
  const int32_t* prefill_num_rows = nullptr;
  const int32_t* prefill_start_pos = nullptr;
  const int32_t* prefill_tables = nullptr;
  const int32_t* tiles = nullptr;
  const int32_t* tables = nullptr;
};

CudaModelRunner::CudaModelRunner(const model::ModelConfig& config, const CudaRunnerOptions& options)
    : config_(config),
      num_blocks_(options.num_blocks),
      device_(options.device),
      rope_(config),
      options_(options) {
  layout_.num_layers = config.num_hidden_layers;
  layout_.num_kv_heads = config.num_key_value_heads;
  layout_.head_dim = config.head_dim;
  layout_.block_size = options.block_size;
  layout_.element_bytes = 2;
  q_dim_ = config.num_attention_heads * config.head_dim;
  kv_dim_ = config.num_key_value_heads * config.head_dim;
  // What the tensor-core kernels support (prefill_attention.h, decode_attention.h).
  const int group = config.num_attention_heads / config.num_key_value_heads;
  fast_attention_ = options.fast_attention && (config.head_dim == 64 || config.head_dim == 128) &&
                    (options.block_size & (options.block_size - 1)) == 0 && group <= 16;
  prefill_tile_rows_ = fast_attention_ ? PrefillTileRows(config.head_dim) : 0;
}

CudaModelRunner::~CudaModelRunner() {
  // The buffers are freed on the device they live on, after the stream's last use of them.
  if (cudaSetDevice(device_) == cudaSuccess && stream_.get() != nullptr) {
    (void)stream_.Synchronize();
  }
}

size_t CudaModelRunner::KvBytesPerBlock(const model::ModelConfig& config, int block_size) {
  KvLayout layout{config.num_hidden_layers, config.num_key_value_heads, config.head_dim, block_size,
                  2};
  return layout.BlockBytes();
}

StatusOr<std::unique_ptr<CudaModelRunner>> CudaModelRunner::Create(
    const model::ModelConfig& config, const model::WeightSource& weights,
    const CudaRunnerOptions& options) {
  TANDEM_RETURN_IF_ERROR(config.Validate());
  if (options.num_blocks <= 0) return InvalidArgumentError("num_blocks must be positive");
  if (options.block_size <= 0) return InvalidArgumentError("block_size must be positive");
  if (config.head_dim > kMaxHeadDim) {
    return InvalidArgumentError("head_dim " + std::to_string(config.head_dim) +
                                " exceeds the cuda backend's maximum of " +
                                std::to_string(kMaxHeadDim));
  }
  const int devices = DeviceCount();
  if (options.device < 0 || options.device >= devices) {
    return FailedPreconditionError("cuda device " + std::to_string(options.device) +
                                   " not present (" + std::to_string(devices) + " visible)");
  }
  TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  auto runner = std::unique_ptr<CudaModelRunner>(new CudaModelRunner(config, options));
  TANDEM_ASSIGN_OR_RETURN(runner->stream_, CudaStream::Create());
  TANDEM_ASSIGN_OR_RETURN(runner->copy_stream_, CudaStream::Create());
  TANDEM_ASSIGN_OR_RETURN(runner->gemm_, Gemm::Create());
  TANDEM_ASSIGN_OR_RETURN(runner->sampler_, GpuSampler::Create());
  TANDEM_RETURN_IF_ERROR(runner->LoadWeights(weights));
  // One block more than the pool: the trash block padding rows of graph steps write into.
  const size_t kv_bytes =
      runner->layout_.BlockBytes() * (static_cast<size_t>(options.num_blocks) + 1);
  TANDEM_ASSIGN_OR_RETURN(runner->kv_, DeviceBuffer::Create(kv_bytes));
  // Zeroed so that no read of a never-written slot (a bug) can see NaN garbage.
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemset(runner->kv_.data(), 0, kv_bytes));

  std::vector<float> scratch;
  const std::span<const float> shared = runner->rope_.InvFreq(0, &scratch);
  runner->shared_freq_floats_ = shared.size();
  TANDEM_ASSIGN_OR_RETURN(runner->freqs_,
                          DeviceBuffer::Create(std::max<size_t>(1, shared.size()) * sizeof(float)));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(runner->freqs_.data(), shared.data(),
                                         shared.size() * sizeof(float), cudaMemcpyHostToDevice));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return runner;
}

StatusOr<DeviceBuffer> CudaModelRunner::UploadParts(
    const model::WeightSource& source,
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts, bool bf16_out) {
  const size_t element = bf16_out ? sizeof(uint16_t) : sizeof(float);
  size_t total = 0;
  for (const auto& [name, shape] : parts) total += static_cast<size_t>(model::NumElements(shape));
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer buffer, DeviceBuffer::Create(total * element));
  size_t offset = 0;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  for (const auto& [name, shape] : parts) {
    const auto count = static_cast<size_t>(model::NumElements(shape));
    char* dst = buffer.as<char>() + offset * element;
    if (std::optional<model::WeightSource::RandomRecipe> recipe = source.Recipe(name)) {
      // Generated where it is stored: the same values as the host generator, without 4 bytes
      // per parameter of host memory and a host-side pass (an 8B model in seconds).
      RandomFillParams fill;
      fill.dst = dst;
      fill.bf16_out = bf16_out;
      fill.count = static_cast<int64_t>(count);
      fill.key = recipe->key;
      fill.scale = recipe->scale;
      fill.offset = recipe->offset;
      TANDEM_CUDA_RETURN_IF_ERROR(LaunchRandomFill(fill, nullptr));
    } else {
      TANDEM_ASSIGN_OR_RETURN(model::TensorView view, source.Find(name, shape));
      f32.resize(count);
      model::ConvertToF32(view, std::span<float>(f32));
      const void* src = f32.data();
      if (bf16_out) {
        bf16.resize(count);
        for (size_t i = 0; i < count; ++i) bf16[i] = model::F32ToBf16(f32[i]);
        src = bf16.data();
      }
      TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src, count * element, cudaMemcpyHostToDevice));
    }
    offset += count;
  }
  return buffer;
}

Status CudaModelRunner::LoadWeights(const model::WeightSource& src) {
  const int64_t hidden = config_.hidden_size;
  const int64_t inter = config_.intermediate_size;
  const int64_t vocab = config_.vocab_size;
  const auto bf16 = [&](std::vector<std::pair<std::string, std::vector<int64_t>>> parts) {
    return UploadParts(src, parts, true);
  };
  const auto f32 = [&](std::vector<std::pair<std::string, std::vector<int64_t>>> parts) {
    return UploadParts(src, parts, false);
  };
  TANDEM_ASSIGN_OR_RETURN(embed_, bf16({{"model.embed_tokens.weight", {vocab, hidden}}}));
  layers_.resize(config_.num_hidden_layers);
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    Layer& L = layers_[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    TANDEM_ASSIGN_OR_RETURN(L.input_norm, f32({{p + "input_layernorm.weight", {hidden}}}));
    TANDEM_ASSIGN_OR_RETURN(L.post_norm, f32({{p + "post_attention_layernorm.weight", {hidden}}}));
    TANDEM_ASSIGN_OR_RETURN(L.qkv, bf16({{p + "self_attn.q_proj.weight", {q_dim_, hidden}},
                                         {p + "self_attn.k_proj.weight", {kv_dim_, hidden}},
                                         {p + "self_attn.v_proj.weight", {kv_dim_, hidden}}}));
    if (config_.attention_bias) {
      TANDEM_ASSIGN_OR_RETURN(L.qkv_bias, f32({{p + "self_attn.q_proj.bias", {q_dim_}},
                                               {p + "self_attn.k_proj.bias", {kv_dim_}},
                                               {p + "self_attn.v_proj.bias", {kv_dim_}}}));
    }
    TANDEM_ASSIGN_OR_RETURN(L.o, bf16({{p + "self_attn.o_proj.weight", {hidden, q_dim_}}}));
    if (config_.o_proj_bias) {
      TANDEM_ASSIGN_OR_RETURN(L.o_bias, f32({{p + "self_attn.o_proj.bias", {hidden}}}));
    }
    TANDEM_ASSIGN_OR_RETURN(L.gate_up, bf16({{p + "mlp.gate_proj.weight", {inter, hidden}},
                                             {p + "mlp.up_proj.weight", {inter, hidden}}}));
    TANDEM_ASSIGN_OR_RETURN(L.down, bf16({{p + "mlp.down_proj.weight", {hidden, inter}}}));
    if (config_.mlp_bias) {
      TANDEM_ASSIGN_OR_RETURN(L.gate_up_bias, f32({{p + "mlp.gate_proj.bias", {inter}},
                                                   {p + "mlp.up_proj.bias", {inter}}}));
      TANDEM_ASSIGN_OR_RETURN(L.down_bias, f32({{p + "mlp.down_proj.bias", {hidden}}}));
    }
  }
  TANDEM_ASSIGN_OR_RETURN(final_norm_, f32({{"model.norm.weight", {hidden}}}));
  if (!config_.tie_word_embeddings) {
    TANDEM_ASSIGN_OR_RETURN(lm_head_, bf16({{"lm_head.weight", {vocab, hidden}}}));
  }
  TANDEM_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return OkStatus();
}

Status CudaModelRunner::FillKvRandom(uint64_t seed) {
  TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  RandomFillParams fill;
  fill.dst = kv_.data();
  fill.count = static_cast<int64_t>(kv_.size() / sizeof(bf16));
  fill.key = seed * 0x9e3779b97f4a7c15ull + 1;
  fill.scale = 1.0f;
  TANDEM_CUDA_RETURN_IF_ERROR(LaunchRandomFill(fill, stream_.get()));
  return stream_.Synchronize();
}

Status CudaModelRunner::Reserve(int rows, int wanted, size_t meta_ints, size_t freq_floats,
                                size_t decode_floats) {
  const size_t r = std::max(rows, 1);
  const size_t w = std::max(wanted, 1);
  const size_t hidden = config_.hidden_size;
  const size_t inter = config_.intermediate_size;
  const std::vector<void*> before = {meta_.data(),    x_.data(),     h_.data(),
                                     qkv_.data(),     attn_.data(),  delta_.data(),
                                     gate_up_.data(), act_.data(),   normed_.data(),
                                     logits_.data(),  freqs_.data(), decode_workspace_.data()};
  // Rounded up, so that growing contexts (longer block tables) rarely move the buffers.
  TANDEM_RETURN_IF_ERROR(meta_.Reserve(RoundUpPow2(meta_ints * sizeof(int32_t))));
  TANDEM_RETURN_IF_ERROR(x_.Reserve(r * hidden * sizeof(float)));
  TANDEM_RETURN_IF_ERROR(h_.Reserve(r * hidden * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(qkv_.Reserve(r * (q_dim_ + 2 * kv_dim_) * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(attn_.Reserve(r * q_dim_ * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(delta_.Reserve(r * hidden * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(gate_up_.Reserve(r * 2 * inter * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(act_.Reserve(r * inter * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(normed_.Reserve(w * hidden * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(logits_.Reserve(w * config_.vocab_size * sizeof(float)));
  TANDEM_RETURN_IF_ERROR(decode_workspace_.Reserve(std::max<size_t>(decode_floats, 1) * 4));
  if (freq_floats > shared_freq_floats_) {
    // Reallocation loses the shared table: only steps that upload the tables grow the buffer.
    TANDEM_RETURN_IF_ERROR(freqs_.Reserve(RoundUpPow2(freq_floats) * sizeof(float)));
  }
  const std::vector<void*> after = {meta_.data(),    x_.data(),     h_.data(),
                                    qkv_.data(),     attn_.data(),  delta_.data(),
                                    gate_up_.data(), act_.data(),   normed_.data(),
                                    logits_.data(),  freqs_.data(), decode_workspace_.data()};
  if (before != after) ++generation_;
  return OkStatus();
}

int CudaModelRunner::DecodeSplits(int max_context) const {
  // A power of two, so that the graph of a batch bucket is re-captured only when the longest
  // context doubles.
  const int needed = (max_context + kDecodeSplitTokens - 1) / kDecodeSplitTokens;
  return static_cast<int>(RoundUpPow2(static_cast<size_t>(std::max(needed, 1))));
}

template <typename Params>
Params CudaModelRunner::AttentionCommon(int layer) const {
  Params p;
  p.q = qkv_.as<bf16>();
  p.q_stride = q_dim_ + 2 * kv_dim_;
  p.out = attn_.as<bf16>();
  p.kv_cache = kv_.as<bf16>();
  p.block_elements = layout_.BlockElements();
  p.k_offset = layout_.LayerOffset(layer, 0);
  p.v_offset = layout_.LayerOffset(layer, 1);
  p.block_size = layout_.block_size;
  p.heads = config_.num_attention_heads;
  p.kv_heads = config_.num_key_value_heads;
  p.head_dim = config_.head_dim;
  p.window = config_.sliding_window.value_or(0);
  p.scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
  return p;
}

Status CudaModelRunner::EnqueueForward(const StepArgs& a, cudaStream_t stream) {
  const int hidden = config_.hidden_size;
  const int inter = config_.intermediate_size;
  const int vocab = config_.vocab_size;
  const int bs = layout_.block_size;
  const int qkv_stride = q_dim_ + 2 * kv_dim_;
  const int total = a.rows;
  const auto add_bias = [&](const DeviceBuffer& bias, const DeviceBuffer& data, int cols) {
    if (bias.size() == 0) return cudaSuccess;
    return LaunchAddBias({data.as<bf16>(), bias.as<float>(), total, cols}, stream);
  };

  TANDEM_CUDA_RETURN_IF_ERROR(
      LaunchEmbedding({a.tokens, embed_.as<bf16>(), x_.as<float>(), total, hidden}, stream));
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const int single = a.single_rows;
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const Layer& L = layers_[l];
    // The previous layer's down_proj output joins the residual stream here.
    TANDEM_CUDA_RETURN_IF_ERROR(
        LaunchAddRmsNorm({x_.as<float>(), l == 0 ? nullptr : delta_.as<bf16>(),
                          L.input_norm.as<float>(), h_.as<bf16>(), nullptr, total, hidden, eps},
                         stream));
    TANDEM_RETURN_IF_ERROR(gemm_->RunRows(h_.data(), L.qkv.data(), qkv_.data(), total, single,
                                          qkv_stride, hidden, GemmOut::kBf16, stream));
    TANDEM_CUDA_RETURN_IF_ERROR(add_bias(L.qkv_bias, qkv_, qkv_stride));

    RopeKvWriteParams rope;
    rope.qkv = qkv_.as<bf16>();
    rope.rows = total;
    rope.qkv_stride = qkv_stride;
    rope.heads = config_.num_attention_heads;
    rope.kv_heads = config_.num_key_value_heads;
    rope.head_dim = config_.head_dim;
    rope.rotary_dim = rope_.rotary_dim();
    rope.positions = a.positions;
    rope.freq_offset = a.freq_offset;
    rope.freqs = freqs_.as<float>();
    rope.attention_scaling = rope_.attention_scaling();
    rope.kv_cache = kv_.as<bf16>();
    rope.row_block = a.row_block;
    rope.block_elements = layout_.BlockElements();
    rope.k_offset = layout_.LayerOffset(l, 0);
    rope.v_offset = layout_.LayerOffset(l, 1);
    rope.block_size = bs;
    TANDEM_CUDA_RETURN_IF_ERROR(LaunchRopeKvWrite(rope, stream));

    if (fast_attention_) {
      if (a.num_decode > 0) {
        auto attn = AttentionCommon<DecodeAttentionParams>(l);
        attn.num_seqs = a.num_decode;
        attn.rows = a.decode_rows;
        attn.positions = a.decode_positions;
        attn.table_offset = a.decode_tables;
        attn.block_tables = a.tables;
        attn.split_tokens = kDecodeSplitTokens;
        attn.max_splits = a.decode_splits;
        attn.workspace = decode_workspace_.as<float>();
        TANDEM_CUDA_RETURN_IF_ERROR(LaunchDecodeAttention(attn, stream));
      }
      if (a.num_tiles > 0) {
        auto attn = AttentionCommon<PrefillAttentionParams>(l);
        attn.seq_row_start = a.prefill_row_start;
        attn.seq_num_rows = a.prefill_num_rows;
        attn.seq_start_pos = a.prefill_start_pos;
        attn.seq_table_offset = a.prefill_tables;
        attn.block_tables = a.tables;
        attn.tiles = a.tiles;
        attn.num_tiles = a.num_tiles;
        TANDEM_CUDA_RETURN_IF_ERROR(LaunchPrefillAttention(attn, stream));
      }
    } else {
      auto attn = AttentionCommon<PagedAttentionParams>(l);
      attn.rows = total;
      attn.positions = a.positions;
      attn.table_offset = a.table_offset;
      attn.block_tables = a.tables;
      TANDEM_CUDA_RETURN_IF_ERROR(LaunchPagedAttention(attn, stream));
    }

    TANDEM_RETURN_IF_ERROR(gemm_->RunRows(attn_.data(), L.o.data(), delta_.data(), total, single,
                                          hidden, q_dim_, GemmOut::kBf16, stream));
    TANDEM_CUDA_RETURN_IF_ERROR(add_bias(L.o_bias, delta_, hidden));
    TANDEM_CUDA_RETURN_IF_ERROR(
        LaunchAddRmsNorm({x_.as<float>(), delta_.as<bf16>(), L.post_norm.as<float>(), h_.as<bf16>(),
                          nullptr, total, hidden, eps},
                         stream));
    bool fused = false;
    if (L.gate_up_bias.size() == 0) {
      TANDEM_ASSIGN_OR_RETURN(fused, gemm_->TryRunSiluGated(h_.data(), L.gate_up.data(),
                                                            act_.data(), total, single, inter,
                                                            hidden, stream));
    }
    if (!fused) {
      TANDEM_RETURN_IF_ERROR(gemm_->RunRows(h_.data(), L.gate_up.data(), gate_up_.data(), total,
                                            single, 2 * inter, hidden, GemmOut::kBf16, stream));
      TANDEM_CUDA_RETURN_IF_ERROR(add_bias(L.gate_up_bias, gate_up_, 2 * inter));
      TANDEM_CUDA_RETURN_IF_ERROR(
          LaunchSiluMul({gate_up_.as<bf16>(), act_.as<bf16>(), total, inter}, stream));
    }
    TANDEM_RETURN_IF_ERROR(gemm_->RunRows(act_.data(), L.down.data(), delta_.data(), total, single,
                                          hidden, inter, GemmOut::kBf16, stream));
    TANDEM_CUDA_RETURN_IF_ERROR(add_bias(L.down_bias, delta_, hidden));
  }

  // Final norm and lm_head only for the wanted rows (the last residual add fused in).
  if (a.num_wanted > 0) {
    TANDEM_CUDA_RETURN_IF_ERROR(LaunchAddRmsNorm(
        {x_.as<float>(), config_.num_hidden_layers > 0 ? delta_.as<bf16>() : nullptr,
         final_norm_.as<float>(), normed_.as<bf16>(), a.wanted, a.num_wanted, hidden, eps},
        stream));
    const DeviceBuffer& head = lm_head_.size() > 0 ? lm_head_ : embed_;
    // Every logits row counts as a single row: a step's sampled rows are few.
    TANDEM_RETURN_IF_ERROR(gemm_->RunRows(normed_.data(), head.data(), logits_.data(), a.num_wanted,
                                          a.num_wanted, vocab, hidden, GemmOut::kF32, stream));
  }
  return OkStatus();
}

// A block is one contiguous run of the pool (block-major layout): one cudaMemcpyAsync a block on
// the runner's stream (so ordered with its steps), then one synchronisation. From and to pinned
// memory (host_allocator()) the copies run at the link's speed.
Status CudaModelRunner::CopyBlocks(std::span<const BlockId> blocks, std::byte* const* host,
                                   bool to_pool) {
  const size_t bytes = layout_.BlockBytes();
  TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].value() < 0 || blocks[i].value() >= num_blocks_) {
      return InvalidArgumentError("cuda runner: bad block id");
    }
    char* pool = kv_.as<char>() + blocks[i].value() * bytes;
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(to_pool ? static_cast<void*>(pool) : host[i],
                                                to_pool ? static_cast<const void*>(host[i]) : pool,
                                                bytes,
                                                to_pool ? cudaMemcpyHostToDevice
                                                        : cudaMemcpyDeviceToHost,
                                                stream_.get()));
  }
  return stream_.Synchronize();
}

StatusOr<uint64_t> CudaModelRunner::BeginCopyBlocksOut(std::span<const BlockId> blocks,
                                                      std::span<std::byte* const> dst) {
  if (blocks.size() != dst.size()) return InvalidArgumentError("cuda runner: bad block copy");
  const size_t bytes = layout_.BlockBytes();
  TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  // Behind every step enqueued so far (the blocks' last writes), on the copy stream.
  TANDEM_ASSIGN_OR_RETURN(CudaEvent steps_done, CudaEvent::Create());
  TANDEM_RETURN_IF_ERROR(steps_done.Record(stream_.get()));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_stream_.get(), steps_done.get(), 0));
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].value() < 0 || blocks[i].value() >= num_blocks_) {
      return InvalidArgumentError("cuda runner: bad block id");
    }
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst[i], kv_.as<char>() + blocks[i].value() * bytes,
                                                bytes, cudaMemcpyDeviceToHost,
                                                copy_stream_.get()));
  }
  TANDEM_ASSIGN_OR_RETURN(CudaEvent done, CudaEvent::Create());
  TANDEM_RETURN_IF_ERROR(done.Record(copy_stream_.get()));
  copies_.push_back({next_ticket_, std::move(done)});
  return next_ticket_++;
}

StatusOr<std::vector<uint64_t>> CudaModelRunner::FinishedCopies(bool wait) {
  std::vector<uint64_t> finished;
  while (!copies_.empty()) {
    cudaEvent_t done = copies_.front().done.get();
    const cudaError_t state = wait ? cudaEventSynchronize(done) : cudaEventQuery(done);
    if (state == cudaErrorNotReady) break;
    TANDEM_CUDA_RETURN_IF_ERROR(state);
    finished.push_back(copies_.front().ticket);
    copies_.pop_front();
  }
  return finished;
}

Status CudaModelRunner::CopyBlocksOut(std::span<const BlockId> blocks,
                                      std::span<std::byte* const> dst) {
  if (blocks.size() != dst.size()) return InvalidArgumentError("cuda runner: bad block copy");
  return CopyBlocks(blocks, dst.data(), false);
}

Status CudaModelRunner::CopyBlocksIn(std::span<const BlockId> blocks,
                                     std::span<const std::byte* const> src) {
  if (blocks.size() != src.size()) return InvalidArgumentError("cuda runner: bad block copy");
  return CopyBlocks(blocks, const_cast<std::byte* const*>(src.data()), true);
}

Status CudaModelRunner::Execute(std::span<const SequenceStep> batch,
                                std::vector<SequenceResult>* results) {
  const int vocab = config_.vocab_size;
  // The engine thread is not the one that created the runner: bind it to our device.
  TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  TANDEM_ASSIGN_OR_RETURN(const StepPlan plan,
                          PlanStep(batch, layout_.block_size, num_blocks_, vocab));
  const bool returns_logits = HasReturnedLogits(batch);

  // Decode-only steps (one token per sequence, every one sampling, no logits returned) replay a
  // graph captured for their batch bucket.
  bool graph = options_.cuda_graphs && fast_attention_ && !returns_logits &&
               static_cast<int>(batch.size()) <= options_.max_graph_batch &&
               plan.total_tokens == static_cast<int>(batch.size()) &&
               plan.logits_rows.size() == batch.size();
  const int pad = graph ? GraphBucket(static_cast<int>(batch.size())) : 0;
  graph = graph && pad > 0;

  StepLayoutOptions layout_options;
  layout_options.block_size = layout_.block_size;
  layout_options.trash_block = num_blocks_;
  layout_options.prefill_tile_rows = prefill_tile_rows_;
  layout_options.pad_rows = graph ? pad : 0;
  TANDEM_ASSIGN_OR_RETURN(StepLayout step, BuildStepLayout(batch, plan, rope_, layout_options));
  const int splits = fast_attention_ ? DecodeSplits(step.max_context) : 1;
  const size_t decode_floats =
      fast_attention_ ? DecodeAttentionWorkspaceFloats(step.num_decode, config_.num_attention_heads,
                                                       config_.head_dim, splits)
                      : 0;
  TANDEM_RETURN_IF_ERROR(
      Reserve(step.rows, step.num_wanted, step.ints.size(), step.freqs.size(), decode_floats));

  cudaStream_t stream = stream_.get();
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(meta_.data(), step.ints.data(),
                                              step.ints.size() * sizeof(int32_t),
                                              cudaMemcpyHostToDevice, stream));
  if (!step.freqs.empty()) {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(freqs_.data(), step.freqs.data(),
                                                step.freqs.size() * sizeof(float),
                                                cudaMemcpyHostToDevice, stream));
  }
  const int32_t* m = meta_.as<int32_t>();
  StepArgs args;
  args.rows = step.rows;
  args.num_wanted = step.num_wanted;
  args.num_decode = step.num_decode;
  args.num_tiles = step.num_tiles;
  args.single_rows = step.num_single_rows;
  args.decode_splits = splits;
  args.tokens = m + step.tokens;
  args.positions = m + step.positions;
  args.row_block = m + step.row_block;
  args.freq_offset = m + step.freq_offset;
  args.table_offset = m + step.table_offset;
  args.wanted = m + step.wanted;
  args.decode_rows = m + step.decode_rows;
  args.decode_positions = m + step.decode_positions;
  args.decode_tables = m + step.decode_tables;
  args.prefill_row_start = m + step.prefill_row_start;
  args.prefill_num_rows = m + step.prefill_num_rows;
  args.prefill_start_pos = m + step.prefill_start_pos;
  args.prefill_tables = m + step.prefill_tables;
  args.tiles = m + step.tiles;
  args.tables = m + step.tables;

  if (graph) {
    const std::pair<int, int> key{pad, splits};
    auto it = graphs_.find(key);
    if (it == graphs_.end() || it->second.generation != generation_) {
      TANDEM_ASSIGN_OR_RETURN(CudaGraph captured, CudaGraph::Capture(stream, [&] {
                                return EnqueueForward(args, stream);
                              }));
      Graph& slot = graphs_[key];
      slot.graph = std::move(captured);
      slot.generation = generation_;
      it = graphs_.find(key);
    }
    TANDEM_RETURN_IF_ERROR(it->second.graph.Launch(stream));
  } else {
    TANDEM_RETURN_IF_ERROR(EnqueueForward(args, stream));
  }

  // Sampling on the device; the step's one synchronisation is the sampler's read of its results.
  std::vector<GpuSampler::Row> rows;
  for (size_t s = 0; s < batch.size(); ++s) {
    if (batch[s].sample) rows.push_back({LastLogitsRow(plan, s), &batch[s].sampling});
  }
  if (returns_logits) {
    host_logits_.resize(static_cast<size_t>(step.num_wanted) * vocab);
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_logits_.data(), logits_.data(),
                                                host_logits_.size() * sizeof(float),
                                                cudaMemcpyDeviceToHost, stream));
  }
  TANDEM_RETURN_IF_ERROR(sampler_->Sample(logits_.as<float>(), vocab, rows, stream, &sampled_));
  FillReturnedLogits(batch, plan, returns_logits ? host_logits_.data() : nullptr, vocab, results);
  for (size_t s = 0, i = 0; s < batch.size(); ++s) {
    if (batch[s].sample) (*results)[s].sampled = std::move(sampled_[i++]);
  }
  return OkStatus();
}

}  // namespace tandem::engine::cuda
