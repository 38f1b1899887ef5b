// Rotary position embedding parameters for every supported rope type, computed the way Hugging
// Face transformers computes them (float32 inverse frequencies, cos/sin scaled by the attention
// factor), so both backends reproduce HF logits.
//
// Thread safety: immutable after construction.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/model_config.h"

namespace tandem::engine {

class Rope {
 public:
  explicit Rope(const model::ModelConfig& config);

  int rotary_dim() const { return rotary_dim_; }
  float attention_scaling() const { return attention_scaling_; }

  // The inverse frequencies (rotary_dim / 2 of them) for a sequence whose forward pass reaches
  // `seq_len` tokens. Only the dynamic (NTK) type depends on seq_len: it rescales the base once
  // the sequence outgrows max_position_embeddings, as HF's dynamic update does.
  std::span<const float> InvFreq(int64_t seq_len, std::vector<float>* scratch) const;
  bool depends_on_length() const { return dynamic_; }

  // Rotates `x` (one head, head_dim values, HF's rotate-half pairing i <-> i + rotary_dim/2) to
  // position `pos`.
  void Apply(std::span<const float> inv_freq, int64_t pos, float* x) const;

 private:
  std::vector<float> ComputeDynamic(int64_t seq_len) const;

  model::RopeConfig rope_;
  int rotary_dim_ = 0;
  int64_t max_position_embeddings_ = 0;
  bool dynamic_ = false;
  float attention_scaling_ = 1.0f;
  std::vector<float> inv_freq_;
};

// The longest sequence (prompt plus output) the model serves: max_position_embeddings, stretched
// by the rope factor for linear, dynamic and yarn scaling (as vLLM derives it).
int64_t MaxModelLen(const model::ModelConfig& config);

}  // namespace tandem::engine
