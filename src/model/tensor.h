// Views of tensors stored in checkpoints, and element type conversions.
//
// Thread safety: TensorView is a value type viewing memory it does not own; the owner (a mapped
// file, a WeightSource) must outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem::model {

enum class DType { kF32, kF16, kBF16 };
std::string_view DTypeName(DType dtype);  // Safetensors spelling: "F32", "F16", "BF16".
size_t DTypeBytes(DType dtype);
// The inverse of DTypeName; nullopt for any other spelling (including the safetensors dtypes
// tandem does not load, such as "I64" or "F8_E4M3").
std::optional<DType> DTypeFromName(std::string_view name);

struct TensorView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;

  int64_t NumElements() const;
};

float Bf16ToF32(uint16_t bits);
float F16ToF32(uint16_t bits);
uint16_t F32ToBf16(float value);  // Round to nearest even.
uint16_t F32ToF16(float value);   // Round to nearest even.

// Converts any supported dtype to fp32; out.size() must equal view.NumElements() and
// view.bytes.size() must equal NumElements() * DTypeBytes(dtype) (checked: a mismatch aborts).
// The bytes need no alignment.
void ConvertToF32(const TensorView& view, std::span<float> out);

std::string ShapeString(std::span<const int64_t> shape);  // "[64, 128]".

// The product of the dimensions; 1 for a scalar (empty shape). The caller keeps it in range.
int64_t NumElements(std::span<const int64_t> shape);

}  // namespace tandem::model
