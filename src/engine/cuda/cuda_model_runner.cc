#include "engine/cuda/cuda_model_runner.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "common/status_macros.h"
#include "engine/cuda/kernels.h"
#include "engine/step_plan.h"
#include "model/tensor.h"

namespace tandem::engine::cuda {
namespace {

struct Part {
  std::string name;
  std::vector<int64_t> shape;
};

// Reads `parts` (stacked row-wise, in order) as fp32 from the checkpoint.
Status ReadF32(const model::WeightSource& source, const std::vector<Part>& parts,
               std::vector<float>* out) {
  out->clear();
  for (const Part& part : parts) {
    TANDEM_ASSIGN_OR_RETURN(model::TensorView view, source.Find(part.name, part.shape));
    const size_t offset = out->size();
    out->resize(offset + static_cast<size_t>(view.NumElements()));
    model::ConvertToF32(view, std::span<float>(out->data() + offset, out->size() - offset));
  }
  return OkStatus();
}

StatusOr<DeviceBuffer> Upload(const void* data, size_t bytes) {
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer buffer, DeviceBuffer::Create(bytes));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(buffer.data(), data, bytes, cudaMemcpyHostToDevice));
  return buffer;
}

StatusOr<DeviceBuffer> UploadBf16(const model::WeightSource& source,
                                  const std::vector<Part>& parts) {
  std::vector<float> f32;
  TANDEM_RETURN_IF_ERROR(ReadF32(source, parts, &f32));
  std::vector<uint16_t> bf16(f32.size());
  for (size_t i = 0; i < f32.size(); ++i) bf16[i] = model::F32ToBf16(f32[i]);
  return Upload(bf16.data(), bf16.size() * sizeof(uint16_t));
}

StatusOr<DeviceBuffer> UploadF32(const model::WeightSource& source,
                                 const std::vector<Part>& parts) {
  std::vector<float> f32;
  TANDEM_RETURN_IF_ERROR(ReadF32(source, parts, &f32));
  return Upload(f32.data(), f32.size() * sizeof(float));
}

}  // namespace

CudaModelRunner::CudaModelRunner(const model::ModelConfig& config, const CudaRunnerOptions& options)
    : config_(config), num_blocks_(options.num_blocks), device_(options.device), rope_(config) {
  layout_.num_layers = config.num_hidden_layers;
  layout_.num_kv_heads = config.num_key_value_heads;
  layout_.head_dim = config.head_dim;
  layout_.block_size = options.block_size;
  layout_.element_bytes = 2;
  q_dim_ = config.num_attention_heads * config.head_dim;
  kv_dim_ = config.num_key_value_heads * config.head_dim;
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
  TANDEM_ASSIGN_OR_RETURN(runner->gemm_, Gemm::Create());
  TANDEM_RETURN_IF_ERROR(runner->LoadWeights(weights));
  const size_t kv_bytes = runner->layout_.BlockBytes() * static_cast<size_t>(options.num_blocks);
  TANDEM_ASSIGN_OR_RETURN(runner->kv_, DeviceBuffer::Create(kv_bytes));
  // Zeroed so that no read of a never-written slot (a bug) can see NaN garbage.
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemset(runner->kv_.data(), 0, kv_bytes));

  std::vector<float> scratch;
  const std::span<const float> shared = runner->rope_.InvFreq(0, &scratch);
  runner->shared_freq_floats_ = shared.size();
  TANDEM_ASSIGN_OR_RETURN(
      runner->freqs_, Upload(shared.data(), std::max<size_t>(1, shared.size()) * sizeof(float)));
  return runner;
}

Status CudaModelRunner::LoadWeights(const model::WeightSource& src) {
  const int64_t hidden = config_.hidden_size;
  const int64_t inter = config_.intermediate_size;
  const int64_t vocab = config_.vocab_size;
  TANDEM_ASSIGN_OR_RETURN(embed_,
                          UploadBf16(src, {{"model.embed_tokens.weight", {vocab, hidden}}}));
  layers_.resize(config_.num_hidden_layers);
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    Layer& L = layers_[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    TANDEM_ASSIGN_OR_RETURN(L.input_norm,
                            UploadF32(src, {{p + "input_layernorm.weight", {hidden}}}));
    TANDEM_ASSIGN_OR_RETURN(L.post_norm,
                            UploadF32(src, {{p + "post_attention_layernorm.weight", {hidden}}}));
    TANDEM_ASSIGN_OR_RETURN(L.qkv,
                            UploadBf16(src, {{p + "self_attn.q_proj.weight", {q_dim_, hidden}},
                                             {p + "self_attn.k_proj.weight", {kv_dim_, hidden}},
                                             {p + "self_attn.v_proj.weight", {kv_dim_, hidden}}}));
    if (config_.attention_bias) {
      TANDEM_ASSIGN_OR_RETURN(L.qkv_bias,
                              UploadF32(src, {{p + "self_attn.q_proj.bias", {q_dim_}},
                                              {p + "self_attn.k_proj.bias", {kv_dim_}},
                                              {p + "self_attn.v_proj.bias", {kv_dim_}}}));
    }
    TANDEM_ASSIGN_OR_RETURN(L.o,
                            UploadBf16(src, {{p + "self_attn.o_proj.weight", {hidden, q_dim_}}}));
    if (config_.o_proj_bias) {
      TANDEM_ASSIGN_OR_RETURN(L.o_bias, UploadF32(src, {{p + "self_attn.o_proj.bias", {hidden}}}));
    }
    TANDEM_ASSIGN_OR_RETURN(L.gate_up,
                            UploadBf16(src, {{p + "mlp.gate_proj.weight", {inter, hidden}},
                                             {p + "mlp.up_proj.weight", {inter, hidden}}}));
    TANDEM_ASSIGN_OR_RETURN(L.down,
                            UploadBf16(src, {{p + "mlp.down_proj.weight", {hidden, inter}}}));
    if (config_.mlp_bias) {
      TANDEM_ASSIGN_OR_RETURN(L.gate_up_bias, UploadF32(src, {{p + "mlp.gate_proj.bias", {inter}},
                                                              {p + "mlp.up_proj.bias", {inter}}}));
      TANDEM_ASSIGN_OR_RETURN(L.down_bias, UploadF32(src, {{p + "mlp.down_proj.bias", {hidden}}}));
    }
  }
  TANDEM_ASSIGN_OR_RETURN(final_norm_, UploadF32(src, {{"model.norm.weight", {hidden}}}));
  if (!config_.tie_word_embeddings) {
    TANDEM_ASSIGN_OR_RETURN(lm_head_, UploadBf16(src, {{"lm_head.weight", {vocab, hidden}}}));
  }
  return OkStatus();
}

Status CudaModelRunner::Reserve(int rows, int wanted, size_t meta_ints, size_t freq_floats) {
  const size_t r = std::max(rows, 1);
  const size_t w = std::max(wanted, 1);
  const size_t hidden = config_.hidden_size;
  const size_t inter = config_.intermediate_size;
  TANDEM_RETURN_IF_ERROR(meta_.Reserve(meta_ints * sizeof(int32_t)));
  TANDEM_RETURN_IF_ERROR(x_.Reserve(r * hidden * sizeof(float)));
  TANDEM_RETURN_IF_ERROR(h_.Reserve(r * hidden * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(qkv_.Reserve(r * (q_dim_ + 2 * kv_dim_) * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(attn_.Reserve(r * q_dim_ * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(delta_.Reserve(r * hidden * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(gate_up_.Reserve(r * 2 * inter * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(act_.Reserve(r * inter * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(normed_.Reserve(w * hidden * sizeof(bf16)));
  TANDEM_RETURN_IF_ERROR(logits_.Reserve(w * config_.vocab_size * sizeof(float)));
  if (freq_floats > shared_freq_floats_) {
    TANDEM_RETURN_IF_ERROR(freqs_.Reserve(freq_floats * sizeof(float)));
  }
  return OkStatus();
}

Status CudaModelRunner::Execute(std::span<const SequenceStep> batch,
                                std::vector<SequenceResult>* results) {
  const int hidden = config_.hidden_size;
  const int inter = config_.intermediate_size;
  const int vocab = config_.vocab_size;
  const int bs = layout_.block_size;
  const int qkv_stride = q_dim_ + 2 * kv_dim_;
  // The engine thread is not the one that created the runner: bind it to our device.
  TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));

  TANDEM_ASSIGN_OR_RETURN(const StepPlan plan, PlanStep(batch, bs, num_blocks_, vocab));
  const int total = plan.total_tokens;
  size_t table_ints = 0;
  for (const SequenceStep& seq : batch) table_ints += seq.block_table.size();
  const std::vector<int32_t>& wanted = plan.logits_rows;
  const int num_wanted = static_cast<int>(wanted.size());

  // Step metadata, one upload: [tokens | positions | row blocks | freq offsets | table offsets |
  // block tables | wanted rows]. Rope tables: the shared one, plus one per sequence whose
  // frequencies depend on its length (dynamic NTK past the trained context).
  const size_t meta_ints = 5 * static_cast<size_t>(total) + table_ints + wanted.size();
  host_meta_.assign(meta_ints, 0);
  int32_t* tokens = host_meta_.data();
  int32_t* positions = tokens + total;
  int32_t* row_block = positions + total;
  int32_t* freq_offset = row_block + total;
  int32_t* table_offset = freq_offset + total;
  int32_t* tables = table_offset + total;
  int32_t* wanted_rows = tables + table_ints;
  host_freqs_.clear();
  {
    int r = 0;
    int32_t t = 0;
    std::vector<float> scratch;
    for (const SequenceStep& seq : batch) {
      const std::span<const float> inv =
          rope_.InvFreq(seq.start_pos + static_cast<int64_t>(seq.tokens.size()), &scratch);
      int32_t fo = 0;
      if (!scratch.empty() && inv.data() == scratch.data()) {
        if (host_freqs_.empty()) {
          std::vector<float> shared_scratch;
          const auto shared = rope_.InvFreq(0, &shared_scratch);
          host_freqs_.assign(shared.begin(), shared.end());
        }
        fo = static_cast<int32_t>(host_freqs_.size());
        host_freqs_.insert(host_freqs_.end(), inv.begin(), inv.end());
        scratch.clear();
      }
      for (size_t b = 0; b < seq.block_table.size(); ++b)
        tables[t + b] = seq.block_table[b].value();
      for (size_t i = 0; i < seq.tokens.size(); ++i, ++r) {
        const int64_t pos = seq.start_pos + static_cast<int64_t>(i);
        tokens[r] = seq.tokens[i];
        positions[r] = static_cast<int32_t>(pos);
        row_block[r] = seq.block_table[pos / bs].value();
        freq_offset[r] = fo;
        table_offset[r] = t;
      }
      t += static_cast<int32_t>(seq.block_table.size());
    }
  }
  std::copy(wanted.begin(), wanted.end(), wanted_rows);

  TANDEM_RETURN_IF_ERROR(Reserve(total, num_wanted, meta_ints, host_freqs_.size()));
  cudaStream_t stream = stream_.get();
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(meta_.data(), host_meta_.data(),
                                              meta_ints * sizeof(int32_t), cudaMemcpyHostToDevice,
                                              stream));
  if (!host_freqs_.empty()) {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(freqs_.data(), host_freqs_.data(),
                                                host_freqs_.size() * sizeof(float),
                                                cudaMemcpyHostToDevice, stream));
  }
  const int32_t* d_meta = meta_.as<int32_t>();
  const int32_t* d_tokens = d_meta;
  const int32_t* d_positions = d_tokens + total;
  const int32_t* d_row_block = d_positions + total;
  const int32_t* d_freq_offset = d_row_block + total;
  const int32_t* d_table_offset = d_freq_offset + total;
  const int32_t* d_tables = d_table_offset + total;
  const int32_t* d_wanted = d_tables + table_ints;

  const auto add_bias = [&](const DeviceBuffer& bias, const DeviceBuffer& data, int cols) {
    if (bias.size() == 0) return cudaSuccess;
    return LaunchAddBias({data.as<bf16>(), bias.as<float>(), total, cols}, stream);
  };

  TANDEM_CUDA_RETURN_IF_ERROR(
      LaunchEmbedding({d_tokens, embed_.as<bf16>(), x_.as<float>(), total, hidden}, stream));
  const float eps = static_cast<float>(config_.rms_norm_eps);
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const Layer& L = layers_[l];
    // The previous layer's down_proj output joins the residual stream here.
    TANDEM_CUDA_RETURN_IF_ERROR(
        LaunchAddRmsNorm({x_.as<float>(), l == 0 ? nullptr : delta_.as<bf16>(),
                          L.input_norm.as<float>(), h_.as<bf16>(), nullptr, total, hidden, eps},
                         stream));
    TANDEM_RETURN_IF_ERROR(gemm_->Run(h_.data(), L.qkv.data(), qkv_.data(), total, qkv_stride,
                                      hidden, GemmOut::kBf16, stream));
    TANDEM_CUDA_RETURN_IF_ERROR(add_bias(L.qkv_bias, qkv_, qkv_stride));

    RopeKvWriteParams rope;
    rope.qkv = qkv_.as<bf16>();
    rope.rows = total;
    rope.qkv_stride = qkv_stride;
    rope.heads = config_.num_attention_heads;
    rope.kv_heads = config_.num_key_value_heads;
    rope.head_dim = config_.head_dim;
    rope.rotary_dim = rope_.rotary_dim();
    rope.positions = d_positions;
    rope.freq_offset = d_freq_offset;
    rope.freqs = freqs_.as<float>();
    rope.attention_scaling = rope_.attention_scaling();
    rope.kv_cache = kv_.as<bf16>();
    rope.row_block = d_row_block;
    rope.block_elements = layout_.BlockElements();
    rope.k_offset = layout_.LayerOffset(l, 0);
    rope.v_offset = layout_.LayerOffset(l, 1);
    rope.block_size = bs;
    TANDEM_CUDA_RETURN_IF_ERROR(LaunchRopeKvWrite(rope, stream));

    PagedAttentionParams attn;
    attn.q = qkv_.as<bf16>();
    attn.q_stride = qkv_stride;
    attn.out = attn_.as<bf16>();
    attn.kv_cache = kv_.as<bf16>();
    attn.block_elements = layout_.BlockElements();
    attn.k_offset = rope.k_offset;
    attn.v_offset = rope.v_offset;
    attn.block_size = bs;
    attn.heads = config_.num_attention_heads;
    attn.kv_heads = config_.num_key_value_heads;
    attn.head_dim = config_.head_dim;
    attn.rows = total;
    attn.positions = d_positions;
    attn.table_offset = d_table_offset;
    attn.block_tables = d_tables;
    attn.window = config_.sliding_window.value_or(0);
    attn.scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
    TANDEM_CUDA_RETURN_IF_ERROR(LaunchPagedAttention(attn, stream));

    TANDEM_RETURN_IF_ERROR(gemm_->Run(attn_.data(), L.o.data(), delta_.data(), total, hidden,
                                      q_dim_, GemmOut::kBf16, stream));
    TANDEM_CUDA_RETURN_IF_ERROR(add_bias(L.o_bias, delta_, hidden));
    TANDEM_CUDA_RETURN_IF_ERROR(
        LaunchAddRmsNorm({x_.as<float>(), delta_.as<bf16>(), L.post_norm.as<float>(), h_.as<bf16>(),
                          nullptr, total, hidden, eps},
                         stream));
    TANDEM_RETURN_IF_ERROR(gemm_->Run(h_.data(), L.gate_up.data(), gate_up_.data(), total,
                                      2 * inter, hidden, GemmOut::kBf16, stream));
    TANDEM_CUDA_RETURN_IF_ERROR(add_bias(L.gate_up_bias, gate_up_, 2 * inter));
    TANDEM_CUDA_RETURN_IF_ERROR(
        LaunchSiluMul({gate_up_.as<bf16>(), act_.as<bf16>(), total, inter}, stream));
    TANDEM_RETURN_IF_ERROR(gemm_->Run(act_.data(), L.down.data(), delta_.data(), total, hidden,
                                      inter, GemmOut::kBf16, stream));
    TANDEM_CUDA_RETURN_IF_ERROR(add_bias(L.down_bias, delta_, hidden));
  }

  // Final norm and lm_head only for the wanted rows (the last residual add fused in).
  if (num_wanted > 0) {
    TANDEM_CUDA_RETURN_IF_ERROR(LaunchAddRmsNorm(
        {x_.as<float>(), config_.num_hidden_layers > 0 ? delta_.as<bf16>() : nullptr,
         final_norm_.as<float>(), normed_.as<bf16>(), d_wanted, num_wanted, hidden, eps},
        stream));
    const DeviceBuffer& head = lm_head_.size() > 0 ? lm_head_ : embed_;
    TANDEM_RETURN_IF_ERROR(gemm_->Run(normed_.data(), head.data(), logits_.data(), num_wanted,
                                      vocab, hidden, GemmOut::kF32, stream));
    host_logits_.resize(static_cast<size_t>(num_wanted) * vocab);
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_logits_.data(), logits_.data(),
                                                host_logits_.size() * sizeof(float),
                                                cudaMemcpyDeviceToHost, stream));
  }
  TANDEM_RETURN_IF_ERROR(stream_.Synchronize());

  FinishStep(batch, plan, host_logits_.data(), vocab, results);
  return OkStatus();
}

}  // namespace tandem::engine::cuda
