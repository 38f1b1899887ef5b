#include "engine/cpu/cpu_model_runner.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "common/status_macros.h"
#include "engine/cpu/gemm.h"
#include "engine/step_plan.h"

namespace tandem::engine::cpu {
namespace {

void RmsNorm(const float* x, const float* weight, int n, double eps, float* out) {
  // HF computes the variance in float32.
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) sum += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(sum / static_cast<float>(n) + static_cast<float>(eps));
  for (int i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inv);
}

Status Load(const model::WeightSource& source, const std::string& name,
            std::vector<int64_t> shape, std::vector<float>* out, size_t offset = 0) {
  TANDEM_ASSIGN_OR_RETURN(model::TensorView view, source.Find(name, shape));
  const size_t n = static_cast<size_t>(view.NumElements());
  if (out->size() < offset + n) out->resize(offset + n);
  model::ConvertToF32(view, std::span<float>(out->data() + offset, n));
  return OkStatus();
}

}  // namespace

CpuModelRunner::CpuModelRunner(const model::ModelConfig& config, const CpuRunnerOptions& options)
    : config_(config), num_blocks_(options.num_blocks), rope_(config) {
  layout_.num_layers = config.num_hidden_layers;
  layout_.num_kv_heads = config.num_key_value_heads;
  layout_.head_dim = config.head_dim;
  layout_.block_size = options.block_size;
  layout_.element_bytes = sizeof(float);
  q_dim_ = config.num_attention_heads * config.head_dim;
  kv_dim_ = config.num_key_value_heads * config.head_dim;
}

size_t CpuModelRunner::KvBytesPerBlock(const model::ModelConfig& config, int block_size) {
  KvLayout layout{config.num_hidden_layers, config.num_key_value_heads, config.head_dim,
                  block_size, static_cast<int>(sizeof(float))};
  return layout.BlockBytes();
}

StatusOr<std::unique_ptr<CpuModelRunner>> CpuModelRunner::Create(
    const model::ModelConfig& config, const model::WeightSource& weights,
    const CpuRunnerOptions& options) {
  TANDEM_RETURN_IF_ERROR(config.Validate());
  if (options.num_blocks <= 0) return InvalidArgumentError("num_blocks must be positive");
  if (options.block_size <= 0) return InvalidArgumentError("block_size must be positive");
  auto runner = std::unique_ptr<CpuModelRunner>(new CpuModelRunner(config, options));
  TANDEM_RETURN_IF_ERROR(runner->LoadWeights(weights));
  runner->kv_.assign(static_cast<size_t>(runner->layout_.BlockElements()) * options.num_blocks,
                     0.0f);
  return runner;
}

Status CpuModelRunner::LoadWeights(const model::WeightSource& src) {
  const int64_t hidden = config_.hidden_size;
  const int64_t inter = config_.intermediate_size;
  const int64_t vocab = config_.vocab_size;
  TANDEM_RETURN_IF_ERROR(Load(src, "model.embed_tokens.weight", {vocab, hidden}, &embed_));
  layers_.resize(config_.num_hidden_layers);
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    Layer& L = layers_[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    TANDEM_RETURN_IF_ERROR(Load(src, p + "input_layernorm.weight", {hidden}, &L.input_norm));
    TANDEM_RETURN_IF_ERROR(
        Load(src, p + "post_attention_layernorm.weight", {hidden}, &L.post_norm));
    // q, k and v stacked into one matrix: one product per layer instead of three.
    TANDEM_RETURN_IF_ERROR(Load(src, p + "self_attn.q_proj.weight", {q_dim_, hidden}, &L.qkv));
    TANDEM_RETURN_IF_ERROR(
        Load(src, p + "self_attn.k_proj.weight", {kv_dim_, hidden}, &L.qkv, q_dim_ * hidden));
    TANDEM_RETURN_IF_ERROR(Load(src, p + "self_attn.v_proj.weight", {kv_dim_, hidden}, &L.qkv,
                                (q_dim_ + kv_dim_) * hidden));
    if (config_.attention_bias) {
      TANDEM_RETURN_IF_ERROR(Load(src, p + "self_attn.q_proj.bias", {q_dim_}, &L.qkv_bias));
      TANDEM_RETURN_IF_ERROR(
          Load(src, p + "self_attn.k_proj.bias", {kv_dim_}, &L.qkv_bias, q_dim_));
      TANDEM_RETURN_IF_ERROR(
          Load(src, p + "self_attn.v_proj.bias", {kv_dim_}, &L.qkv_bias, q_dim_ + kv_dim_));
    }
    TANDEM_RETURN_IF_ERROR(Load(src, p + "self_attn.o_proj.weight", {hidden, q_dim_}, &L.o));
    if (config_.o_proj_bias) {
      TANDEM_RETURN_IF_ERROR(Load(src, p + "self_attn.o_proj.bias", {hidden}, &L.o_bias));
    }
    TANDEM_RETURN_IF_ERROR(Load(src, p + "mlp.gate_proj.weight", {inter, hidden}, &L.gate_up));
    TANDEM_RETURN_IF_ERROR(
        Load(src, p + "mlp.up_proj.weight", {inter, hidden}, &L.gate_up, inter * hidden));
    TANDEM_RETURN_IF_ERROR(Load(src, p + "mlp.down_proj.weight", {hidden, inter}, &L.down));
    if (config_.mlp_bias) {
      TANDEM_RETURN_IF_ERROR(Load(src, p + "mlp.gate_proj.bias", {inter}, &L.gate_up_bias));
      TANDEM_RETURN_IF_ERROR(Load(src, p + "mlp.up_proj.bias", {inter}, &L.gate_up_bias, inter));
      TANDEM_RETURN_IF_ERROR(Load(src, p + "mlp.down_proj.bias", {hidden}, &L.down_bias));
    }
  }
  TANDEM_RETURN_IF_ERROR(Load(src, "model.norm.weight", {hidden}, &final_norm_));
  if (!config_.tie_word_embeddings) {
    TANDEM_RETURN_IF_ERROR(Load(src, "lm_head.weight", {vocab, hidden}, &lm_head_));
  }
  return OkStatus();
}

float* CpuModelRunner::KvSlot(BlockId block, int layer, int kv, int slot) {
  return kv_.data() + block.value() * layout_.BlockElements() + layout_.LayerOffset(layer, kv) +
         static_cast<int64_t>(slot) * layout_.TokenElements();
}

void CpuModelRunner::Attention(std::span<const SequenceStep> batch, int layer, float* qkv,
                               std::span<const std::span<const float>> inv_freqs, float* out) {
  const int hd = config_.head_dim;
  const int heads = config_.num_attention_heads;
  const int group = heads / config_.num_key_value_heads;
  const int qkv_stride = q_dim_ + 2 * kv_dim_;
  const int bs = layout_.block_size;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // Rotate q and k, then append k and v to the cache, before any token of the step attends.
  std::vector<std::pair<int, int>> rows;  // (sequence, token index) of each row.
  for (int s = 0; s < static_cast<int>(batch.size()); ++s) {
    for (int i = 0; i < static_cast<int>(batch[s].tokens.size()); ++i) rows.emplace_back(s, i);
  }
  const int num_rows = static_cast<int>(rows.size());
#pragma omp parallel for schedule(static)
  for (int r = 0; r < num_rows; ++r) {
    const auto [s, i] = rows[r];
    const SequenceStep& seq = batch[s];
    const int64_t pos = seq.start_pos + i;
    float* row = qkv + static_cast<int64_t>(r) * qkv_stride;
    for (int h = 0; h < heads; ++h) rope_.Apply(inv_freqs[s], pos, row + h * hd);
    for (int h = 0; h < config_.num_key_value_heads; ++h) {
      rope_.Apply(inv_freqs[s], pos, row + q_dim_ + h * hd);
    }
    const BlockId block = seq.block_table[pos / bs];
    const int slot = static_cast<int>(pos % bs);
    std::copy_n(row + q_dim_, kv_dim_, KvSlot(block, layer, 0, slot));
    std::copy_n(row + q_dim_ + kv_dim_, kv_dim_, KvSlot(block, layer, 1, slot));
  }

  const std::optional<int> window = config_.sliding_window;
#pragma omp parallel
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic, 4)
    for (int work = 0; work < num_rows * heads; ++work) {
      const int r = work / heads;
      const int h = work % heads;
      const auto [s, i] = rows[r];
      const SequenceStep& seq = batch[s];
      const int64_t pos = seq.start_pos + i;
      const int64_t first = window ? std::max<int64_t>(0, pos - *window + 1) : 0;
      const float* q = qkv + static_cast<int64_t>(r) * qkv_stride + h * hd;
      const int kvh = h / group;
      scores.resize(pos - first + 1);
      float max_score = -INFINITY;
      for (int64_t j = first; j <= pos; ++j) {
        const float* k = KvSlot(seq.block_table[j / bs], layer, 0, j % bs) + kvh * hd;
        float dot = 0.0f;
        for (int d = 0; d < hd; ++d) dot += q[d] * k[d];
        dot *= scale;
        scores[j - first] = dot;
        max_score = std::max(max_score, dot);
      }
      float sum = 0.0f;
      for (float& sc : scores) {
        sc = std::exp(sc - max_score);
        sum += sc;
      }
      float* o = out + static_cast<int64_t>(r) * q_dim_ + h * hd;
      std::fill_n(o, hd, 0.0f);
      for (int64_t j = first; j <= pos; ++j) {
        const float w = scores[j - first] / sum;
        const float* v = KvSlot(seq.block_table[j / bs], layer, 1, j % bs) + kvh * hd;
        for (int d = 0; d < hd; ++d) o[d] += w * v[d];
      }
    }
  }
}

// A block is one contiguous run of the pool (block-major layout).
Status CpuModelRunner::CopyBlocksOut(std::span<const BlockId> blocks,
                                     std::span<std::byte* const> dst) {
  if (blocks.size() != dst.size()) return InvalidArgumentError("cpu runner: bad block copy");
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].value() < 0 || blocks[i].value() >= num_blocks_) {
      return InvalidArgumentError("cpu runner: bad block id");
    }
    std::memcpy(dst[i], kv_.data() + blocks[i].value() * layout_.BlockElements(),
                layout_.BlockBytes());
  }
  return OkStatus();
}

StatusOr<uint64_t> CpuModelRunner::BeginCopyBlocksOut(std::span<const BlockId> blocks,
                                                     std::span<std::byte* const> dst) {
  TANDEM_RETURN_IF_ERROR(CopyBlocksOut(blocks, dst));  // steps are synchronous: copy now
  finished_.push_back(next_ticket_);
  return next_ticket_++;
}

StatusOr<std::vector<uint64_t>> CpuModelRunner::FinishedCopies(bool) {
  return std::exchange(finished_, {});
}

Status CpuModelRunner::CopyBlocksIn(std::span<const BlockId> blocks,
                                    std::span<const std::byte* const> src) {
  if (blocks.size() != src.size()) return InvalidArgumentError("cpu runner: bad block copy");
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].value() < 0 || blocks[i].value() >= num_blocks_) {
      return InvalidArgumentError("cpu runner: bad block id");
    }
    std::memcpy(kv_.data() + blocks[i].value() * layout_.BlockElements(), src[i],
                layout_.BlockBytes());
  }
  return OkStatus();
}

Status CpuModelRunner::Execute(std::span<const SequenceStep> batch,
                               std::vector<SequenceResult>* results) {
  const int hidden = config_.hidden_size;
  const int inter = config_.intermediate_size;
  const int vocab = config_.vocab_size;
  const int bs = layout_.block_size;

  TANDEM_ASSIGN_OR_RETURN(const StepPlan plan, PlanStep(batch, bs, num_blocks_, vocab));
  const int total = plan.total_tokens;

  const int qkv_stride = q_dim_ + 2 * kv_dim_;
  x_.resize(static_cast<size_t>(total) * hidden);
  h_.resize(x_.size());
  qkv_.resize(static_cast<size_t>(total) * qkv_stride);
  attn_.resize(static_cast<size_t>(total) * q_dim_);
  tmp_.resize(x_.size());
  gate_up_.resize(static_cast<size_t>(total) * 2 * inter);
  act_.resize(static_cast<size_t>(total) * inter);

  {
    int r = 0;
    for (const SequenceStep& seq : batch) {
      for (int32_t t : seq.tokens) {
        std::copy_n(embed_.data() + static_cast<int64_t>(t) * hidden, hidden,
                    x_.data() + static_cast<int64_t>(r++) * hidden);
      }
    }
  }

  // Each sequence's rope frequencies (only dynamic NTK makes them differ).
  std::vector<std::vector<float>> scratch(batch.size());
  std::vector<std::span<const float>> inv_freqs(batch.size());
  for (size_t s = 0; s < batch.size(); ++s) {
    inv_freqs[s] = rope_.InvFreq(batch[s].start_pos + batch[s].tokens.size(), &scratch[s]);
  }

  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const Layer& L = layers_[l];
#pragma omp parallel for schedule(static)
    for (int r = 0; r < total; ++r) {
      RmsNorm(x_.data() + static_cast<int64_t>(r) * hidden, L.input_norm.data(), hidden,
              config_.rms_norm_eps, h_.data() + static_cast<int64_t>(r) * hidden);
    }
    MatMulTransB(h_.data(), total, hidden, L.qkv.data(), qkv_stride,
                 L.qkv_bias.empty() ? nullptr : L.qkv_bias.data(), qkv_.data());
    Attention(batch, l, qkv_.data(), inv_freqs, attn_.data());
    MatMulTransB(attn_.data(), total, q_dim_, L.o.data(), hidden,
                 L.o_bias.empty() ? nullptr : L.o_bias.data(), tmp_.data());
    for (size_t i = 0; i < x_.size(); ++i) x_[i] += tmp_[i];

#pragma omp parallel for schedule(static)
    for (int r = 0; r < total; ++r) {
      RmsNorm(x_.data() + static_cast<int64_t>(r) * hidden, L.post_norm.data(), hidden,
              config_.rms_norm_eps, h_.data() + static_cast<int64_t>(r) * hidden);
    }
    MatMulTransB(h_.data(), total, hidden, L.gate_up.data(), 2 * inter,
                 L.gate_up_bias.empty() ? nullptr : L.gate_up_bias.data(), gate_up_.data());
#pragma omp parallel for schedule(static)
    for (int r = 0; r < total; ++r) {
      const float* g = gate_up_.data() + static_cast<int64_t>(r) * 2 * inter;
      const float* u = g + inter;
      float* a = act_.data() + static_cast<int64_t>(r) * inter;
      for (int i = 0; i < inter; ++i) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    }
    MatMulTransB(act_.data(), total, inter, L.down.data(), hidden,
                 L.down_bias.empty() ? nullptr : L.down_bias.data(), tmp_.data());
    for (size_t i = 0; i < x_.size(); ++i) x_[i] += tmp_[i];
  }

  // Final norm and lm_head only for the rows someone asked for.
  const int num_wanted = static_cast<int>(plan.logits_rows.size());
  std::vector<float> normed(static_cast<size_t>(num_wanted) * hidden);
  for (int w = 0; w < num_wanted; ++w) {
    RmsNorm(x_.data() + static_cast<int64_t>(plan.logits_rows[w]) * hidden, final_norm_.data(),
            hidden, config_.rms_norm_eps, normed.data() + static_cast<int64_t>(w) * hidden);
  }
  std::vector<float> logits(static_cast<size_t>(num_wanted) * vocab);
  if (num_wanted > 0) {
    MatMulTransB(normed.data(), num_wanted, hidden,
                 lm_head_.empty() ? embed_.data() : lm_head_.data(), vocab, nullptr,
                 logits.data());
  }
  FinishStep(batch, plan, logits.data(), vocab, results);
  return OkStatus();
}

}  // namespace tandem::engine::cpu
