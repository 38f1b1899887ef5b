// RandomWeights: every tensor of a config drawn from a counter-based generator, so element i of a
// tensor depends only on (seed, tensor name, i) and not on the order tensors are asked for, the
// thread asking, or the machine.

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <utility>

#include "common/status_macros.h"
#include "model/json_fields.h"
#include "model/weight_source.h"

namespace tandem::model {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

// splitmix64's output function.
inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a64(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

enum class Kind { kMatrix, kNorm, kBias };

Kind KindOf(std::string_view name) {
  if (name.ends_with("norm.weight")) return Kind::kNorm;
  if (name.ends_with(".bias")) return Kind::kBias;
  return Kind::kMatrix;
}

// The generator's scale and offset for a kind of tensor.
std::pair<float, float> ScaleOffset(Kind kind) {
  switch (kind) {
    case Kind::kMatrix:
      return {static_cast<float>(0.02 * std::sqrt(3.0)), 0.0f};  // std 0.02.
    case Kind::kNorm:
      return {0.1f, 1.0f};
    case Kind::kBias:
      return {0.02f, 0.0f};
  }
  return {0.0f, 0.0f};
}

// Fills `out` with element values: u = (2k + 1 - 2^24) / 2^24 for 24 random bits k is symmetric
// in (-1, 1), has variance ~1/3, and is never 0; every step is exact in float except the final
// scaling, so the values are the same on every IEEE machine.
void Generate(uint64_t key, Kind kind, std::span<float> out) {
  const auto [scale, offset] = ScaleOffset(kind);
  const size_t n = out.size();
  float* const data = out.data();
  for (size_t i = 0; i < n; ++i) {
    const auto k = static_cast<int32_t>(Mix64(key + (i + 1) * kGolden) >> 40);
    const float u = static_cast<float>(2 * k + 1 - (1 << 24)) * 0x1p-24f;
    data[i] = offset + scale * u;
  }
}

class RandomWeightSource final : public WeightSource {
 public:
  RandomWeightSource(const ModelConfig& config, uint64_t seed) : seed_(seed) {
    for (TensorSpec& spec : ExpectedTensors(config)) {
      auto slot = std::make_unique<Slot>();
      slot->kind = KindOf(spec.name);
      slot->key = Mix64(seed ^ Fnv1a64(spec.name));
      slot->shape = std::move(spec.shape);
      slots_.emplace(std::move(spec.name), std::move(slot));
    }
  }

  StatusOr<TensorView> Find(std::string_view name,
                            std::span<const int64_t> expected_shape) const override {
    const auto it = slots_.find(name);
    if (it == slots_.end()) {
      return NotFoundError(Source() + ": no tensor " + QuoteForMessage(name));
    }
    Slot& slot = *it->second;
    if (!std::ranges::equal(slot.shape, expected_shape)) {
      return InvalidArgumentError(Source() + ": tensor " + QuoteForMessage(name) + " has shape " +
                                  ShapeString(slot.shape) + ", expected " +
                                  ShapeString(expected_shape));
    }
    // Generated on first use, once, even when several threads ask at the same time; distinct
    // tensors generate in parallel.
    std::call_once(slot.once, [&slot] {
      slot.data.resize(static_cast<size_t>(NumElements(slot.shape)));
      Generate(slot.key, slot.kind, slot.data);
    });
    return TensorView{DType::kF32, slot.shape, std::as_bytes(std::span<const float>(slot.data))};
  }

  bool Contains(std::string_view name) const override { return slots_.find(name) != slots_.end(); }

  std::string Identity() const override { return "random:" + std::to_string(seed_); }

  std::optional<RandomRecipe> Recipe(std::string_view name) const override {
    const auto it = slots_.find(name);
    if (it == slots_.end()) return std::nullopt;
    const auto [scale, offset] = ScaleOffset(it->second->kind);
    return RandomRecipe{it->second->key, scale, offset};
  }

 private:
  struct Slot {
    std::vector<int64_t> shape;
    Kind kind = Kind::kMatrix;
    uint64_t key = 0;
    std::once_flag once;
    std::vector<float> data;  // Written once under `once`, read-only afterwards.
  };

  std::string Source() const { return "random weights (seed " + std::to_string(seed_) + ")"; }

  const uint64_t seed_;
  // Built by the constructor and never changed, so lookups need no lock.
  std::map<std::string, std::unique_ptr<Slot>, std::less<>> slots_;
};

}  // namespace

std::unique_ptr<WeightSource> RandomWeights(const ModelConfig& config, uint64_t seed) {
  TANDEM_CHECK(config.Validate().ok());
  return std::make_unique<RandomWeightSource>(config, seed);
}

}  // namespace tandem::model
