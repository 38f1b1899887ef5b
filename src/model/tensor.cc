#include "model/tensor.h"

#include <bit>
#include <cstring>

#include "common/status_macros.h"

namespace tandem::model {
namespace {

static_assert(std::endian::native == std::endian::little,
              "tensor bytes are read as little-endian (the safetensors byte order)");

template <typename T>
T LoadUnaligned(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

}  // namespace

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

std::optional<DType> DTypeFromName(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return std::nullopt;
}

size_t DTypeBytes(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
  }
  return 0;
}

int64_t TensorView::NumElements() const { return model::NumElements(shape); }

int64_t NumElements(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (const int64_t dim : shape) n *= dim;
  return n;
}

float Bf16ToF32(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t F32ToBf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    // NaN: keep sign and the top payload bits, and set the quiet bit so that truncating the payload
    // cannot turn it into infinity.
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  // Round to nearest, ties to even: add half an ulp of bf16 minus one, plus the lowest kept bit.
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float F16ToF32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in fp32.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) {
    // Infinity, or NaN with its payload (and quiet bit) carried over.
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  }
  // Rebias the exponent from 15 to 127.
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint16_t F32ToF16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;

  if (magnitude >= 0x7f800000u) {
    if (magnitude == 0x7f800000u) return sign | 0x7c00u;  // Infinity.
    // NaN: quiet, with the top payload bits.
    return static_cast<uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  }
  // 65520 is halfway between fp16's largest finite value 65504 and the next step (2^16); ties go
  // to the even neighbour, which is infinity.
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;
  if (magnitude >= 0x38800000u) {
    // Normal in fp16 (>= 2^-14). Rebias the exponent (127 -> 15), keep 10 mantissa bits, round
    // the 13 dropped bits to nearest even; a carry propagates into the exponent correctly.
    uint32_t half = (magnitude - 0x38000000u) >> 13;
    const uint32_t dropped = magnitude & 0x1fffu;
    if (dropped > 0x1000u || (dropped == 0x1000u && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  // 2^-25 and below round to zero (2^-25 itself is a tie with zero, the even choice).
  if (magnitude <= 0x33000000u) return sign;
  // Subnormal in fp16: the result counts units of 2^-24. With the implicit bit the fp32 value is
  // m * 2^(e - 150), i.e. m * 2^(e - 126) units; e is in [102, 112], so shift in [14, 24].
  const uint32_t e = magnitude >> 23;
  const uint32_t m = (magnitude & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;
  uint32_t half = m >> shift;
  const uint32_t dropped = m & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1u);
  if (dropped > halfway || (dropped == halfway && (half & 1u))) ++half;
  // Rounding up from the largest subnormal gives 0x400, the smallest normal: still correct.
  return static_cast<uint16_t>(sign | half);
}

void ConvertToF32(const TensorView& view, std::span<float> out) {
  const int64_t n = view.NumElements();
  TANDEM_CHECK(static_cast<int64_t>(out.size()) == n);
  TANDEM_CHECK(view.bytes.size() == static_cast<size_t>(n) * DTypeBytes(view.dtype));
  const std::byte* src = view.bytes.data();
  switch (view.dtype) {
    case DType::kF32:
      if (n > 0) std::memcpy(out.data(), src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = F16ToF32(LoadUnaligned<uint16_t>(src + 2 * i));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToF32(LoadUnaligned<uint16_t>(src + 2 * i));
      return;
  }
}

std::string ShapeString(std::span<const int64_t> shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  out += "]";
  return out;
}

}  // namespace tandem::model
