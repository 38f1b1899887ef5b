#include "engine/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace tandem::engine {
namespace {

// base ** (2i / dim) in float32, as torch computes `base ** (arange(0, dim, 2).float() / dim)`.
std::vector<float> DefaultInvFreq(double base, int dim) {
  std::vector<float> inv(dim / 2);
  const float fbase = static_cast<float>(base);
  for (int i = 0; i < dim / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[i] = 1.0f / std::pow(fbase, e);
  }
  return inv;
}

double YarnMscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

double YarnCorrectionDim(double rotations, int dim, double base, double max_pos) {
  return (dim * std::log(max_pos / (rotations * 2 * std::numbers::pi))) / (2 * std::log(base));
}

}  // namespace

Rope::Rope(const model::ModelConfig& config)
    : rope_(config.rope), max_position_embeddings_(config.max_position_embeddings) {
  rotary_dim_ = static_cast<int>(config.head_dim * rope_.partial_rotary_factor);
  const int dim = rotary_dim_;
  const double base = rope_.theta;
  const int64_t original_max = rope_.original_max_position_embeddings > 0
                                   ? rope_.original_max_position_embeddings
                                   : config.max_position_embeddings;
  switch (rope_.type) {
    case model::RopeType::kDefault:
      inv_freq_ = DefaultInvFreq(base, dim);
      break;
    case model::RopeType::kLinear:
      inv_freq_ = DefaultInvFreq(base, dim);
      for (float& f : inv_freq_) f = static_cast<float>(f / rope_.factor);
      break;
    case model::RopeType::kDynamic:
      dynamic_ = true;
      inv_freq_ = DefaultInvFreq(base, dim);
      break;
    case model::RopeType::kLlama3: {
      inv_freq_ = DefaultInvFreq(base, dim);
      const double factor = rope_.factor;
      const double low_wavelen = original_max / rope_.low_freq_factor;
      const double high_wavelen = original_max / rope_.high_freq_factor;
      for (float& f : inv_freq_) {
        const float wavelen = static_cast<float>(2 * std::numbers::pi) / f;
        if (wavelen > low_wavelen) {
          f = static_cast<float>(f / factor);
        } else if (!(wavelen < high_wavelen)) {
          const float smooth = static_cast<float>(
              (original_max / wavelen - rope_.low_freq_factor) /
              (rope_.high_freq_factor - rope_.low_freq_factor));
          f = (1.0f - smooth) * static_cast<float>(f / factor) + smooth * f;
        }
      }
      break;
    }
    case model::RopeType::kYarn: {
      const double factor = rope_.factor;
      if (rope_.attention_factor) {
        attention_scaling_ = static_cast<float>(*rope_.attention_factor);
      } else if (rope_.mscale && rope_.mscale_all_dim && *rope_.mscale && *rope_.mscale_all_dim) {
        attention_scaling_ = static_cast<float>(YarnMscale(factor, *rope_.mscale) /
                                                YarnMscale(factor, *rope_.mscale_all_dim));
      } else {
        attention_scaling_ = static_cast<float>(YarnMscale(factor, 1.0));
      }
      double low = YarnCorrectionDim(rope_.beta_fast, dim, base, static_cast<double>(original_max));
      double high =
          YarnCorrectionDim(rope_.beta_slow, dim, base, static_cast<double>(original_max));
      if (rope_.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, static_cast<double>(dim - 1));
      if (low == high) high += 0.001;
      inv_freq_.resize(dim / 2);
      for (int i = 0; i < dim / 2; ++i) {
        const float pos_freq = std::pow(static_cast<float>(base),
                                        static_cast<float>(2 * i) / static_cast<float>(dim));
        const float extrapolation = 1.0f / pos_freq;
        const float interpolation = 1.0f / (static_cast<float>(factor) * pos_freq);
        const float ramp =
            std::clamp(static_cast<float>((i - low) / (high - low)), 0.0f, 1.0f);
        const float extrapolation_factor = 1.0f - ramp;
        inv_freq_[i] = interpolation * (1.0f - extrapolation_factor) +
                       extrapolation * extrapolation_factor;
      }
      break;
    }
  }
}

std::vector<float> Rope::ComputeDynamic(int64_t seq_len) const {
  const double max_pos = static_cast<double>(max_position_embeddings_);
  const double len = std::max(static_cast<double>(seq_len), max_pos);
  const double dim = rotary_dim_;
  const double base =
      rope_.theta * std::pow(rope_.factor * len / max_pos - (rope_.factor - 1), dim / (dim - 2));
  return DefaultInvFreq(base, rotary_dim_);
}

std::span<const float> Rope::InvFreq(int64_t seq_len, std::vector<float>* scratch) const {
  if (!dynamic_ || seq_len <= max_position_embeddings_) return inv_freq_;
  *scratch = ComputeDynamic(seq_len);
  return *scratch;
}

void Rope::Apply(std::span<const float> inv_freq, int64_t pos, float* x) const {
  const int half = rotary_dim_ / 2;
  const float fpos = static_cast<float>(pos);
  for (int i = 0; i < half; ++i) {
    // HF: freqs = inv_freq * pos in float32; cos/sin of that, times the attention factor.
    const float angle = inv_freq[i] * fpos;
    const float c = static_cast<float>(std::cos(static_cast<double>(angle))) * attention_scaling_;
    const float s = static_cast<float>(std::sin(static_cast<double>(angle))) * attention_scaling_;
    const float a = x[i];
    const float b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

int64_t MaxModelLen(const model::ModelConfig& config) {
  const auto& rope = config.rope;
  switch (rope.type) {
    case model::RopeType::kLinear:
    case model::RopeType::kDynamic:
      return static_cast<int64_t>(config.max_position_embeddings * rope.factor);
    case model::RopeType::kYarn: {
      const int64_t original = rope.original_max_position_embeddings > 0
                                   ? rope.original_max_position_embeddings
                                   : config.max_position_embeddings;
      return std::max<int64_t>(config.max_position_embeddings,
                               static_cast<int64_t>(original * rope.factor));
    }
    case model::RopeType::kDefault:
    case model::RopeType::kLlama3:
      return config.max_position_embeddings;
  }
  return config.max_position_embeddings;
}

}  // namespace tandem::engine
