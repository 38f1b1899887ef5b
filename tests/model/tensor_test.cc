#include "model/tensor.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace tandem::model {
namespace {

float Bits(uint32_t bits) { return std::bit_cast<float>(bits); }
uint32_t BitsOf(float value) { return std::bit_cast<uint32_t>(value); }

TEST(DTypeTest, NamesAndSizes) {
  EXPECT_EQ(DTypeName(DType::kF32), "F32");
  EXPECT_EQ(DTypeName(DType::kF16), "F16");
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_EQ(DTypeBytes(DType::kF32), 4u);
  EXPECT_EQ(DTypeBytes(DType::kF16), 2u);
  EXPECT_EQ(DTypeBytes(DType::kBF16), 2u);
  for (const DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
    EXPECT_EQ(DTypeFromName(DTypeName(d)), d);
  }
  EXPECT_FALSE(DTypeFromName("I64").has_value());
  EXPECT_FALSE(DTypeFromName("bf16").has_value());
  EXPECT_FALSE(DTypeFromName("").has_value());
}

TEST(ShapeTest, StringAndElementCount) {
  EXPECT_EQ(ShapeString(std::vector<int64_t>{64, 128}), "[64, 128]");
  EXPECT_EQ(ShapeString(std::vector<int64_t>{7}), "[7]");
  EXPECT_EQ(ShapeString(std::vector<int64_t>{}), "[]");
  EXPECT_EQ(NumElements(std::vector<int64_t>{64, 128}), 8192);
  EXPECT_EQ(NumElements(std::vector<int64_t>{}), 1);
  EXPECT_EQ(NumElements(std::vector<int64_t>{3, 0, 5}), 0);
  TensorView view;
  view.shape = {2, 3, 4};
  EXPECT_EQ(view.NumElements(), 24);
}

TEST(Bf16Test, KnownValues) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(F32ToBf16(-2.0f), 0xc000);
  EXPECT_EQ(F32ToBf16(0.0f), 0x0000);
  EXPECT_EQ(F32ToBf16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToBf16(3.14159265f), 0x4049);  // 0x40490fdb: the dropped half is below a tie.
  EXPECT_EQ(F32ToBf16(0.1f), 0x3dcd);         // 0x3dcccccd rounds up.
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(F32ToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::max()), 0x7f80);  // Rounds past the top.
  EXPECT_EQ(F32ToBf16(Bits(0x7f7f7fff)), 0x7f7f);
  EXPECT_EQ(F32ToBf16(Bits(0x00000001)), 0x0000);  // Smallest fp32 subnormal.
  EXPECT_EQ(F32ToBf16(Bits(0x00018000)), 0x0002);  // Subnormal tie, to even.

  EXPECT_EQ(Bf16ToF32(0x3f80), 1.0f);
  EXPECT_EQ(Bf16ToF32(0xc000), -2.0f);
  EXPECT_EQ(Bf16ToF32(0x4049), 3.140625f);
  EXPECT_EQ(Bf16ToF32(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(Bf16ToF32(0x0001), Bits(0x00010000));
  EXPECT_TRUE(std::isnan(Bf16ToF32(0x7fc0)));
}

TEST(Bf16Test, TiesGoToEven) {
  EXPECT_EQ(F32ToBf16(Bits(0x3f808000)), 0x3f80);  // Halfway, low bit even: down.
  EXPECT_EQ(F32ToBf16(Bits(0x3f818000)), 0x3f82);  // Halfway, low bit odd: up.
  EXPECT_EQ(F32ToBf16(Bits(0x3f808001)), 0x3f81);  // Just above halfway: up.
  EXPECT_EQ(F32ToBf16(Bits(0x3f807fff)), 0x3f80);  // Just below halfway: down.
  EXPECT_EQ(F32ToBf16(Bits(0x3fff8000)), 0x4000);  // Carry into the exponent.
  EXPECT_EQ(F32ToBf16(Bits(0xbf818000)), 0xbf82);  // Negative, symmetric.
}

TEST(Bf16Test, NanStaysNan) {
  for (const uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu, 0x7f80ffffu}) {
    const uint16_t b = F32ToBf16(Bits(nan));
    EXPECT_TRUE(std::isnan(Bf16ToF32(b))) << std::hex << nan;
    EXPECT_EQ(b & 0x8000, (nan >> 16) & 0x8000);
  }
}

TEST(Bf16Test, EveryValueRoundTrips) {
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const float f = Bf16ToF32(static_cast<uint16_t>(b));
    EXPECT_EQ(BitsOf(f), b << 16);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(f))));
    } else {
      ASSERT_EQ(F32ToBf16(f), b) << std::hex << b;
    }
  }
}

// Rounds `x` to bf16 by choosing the nearer of the two neighbours, computed in double.
uint16_t ReferenceBf16(float x) {
  const uint32_t bits = BitsOf(x);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const uint16_t lo = static_cast<uint16_t>((bits & 0x7fffffff) >> 16);
  const uint16_t hi = lo + 1;
  auto value = [](uint16_t m) {
    // 0x7f80 is infinity; for rounding it stands where the next binade would start.
    return m == 0x7f80 ? std::ldexp(1.0, 128) : static_cast<double>(Bf16ToF32(m));
  };
  const double a = std::fabs(static_cast<double>(x));
  const double d_lo = a - value(lo);
  const double d_hi = value(hi) - a;
  uint16_t pick = lo;
  if (d_hi < d_lo || (d_hi == d_lo && (lo & 1))) pick = hi;
  return sign | pick;
}

TEST(Bf16Test, MatchesReferenceRounding) {
  for (uint64_t b = 0; b < (1ull << 32); b += 997) {
    const float x = Bits(static_cast<uint32_t>(b));
    if (std::isnan(x) || std::isinf(x)) continue;
    ASSERT_EQ(F32ToBf16(x), ReferenceBf16(x)) << std::hex << b;
  }
}

TEST(F16Test, KnownValues) {
  EXPECT_EQ(F32ToF16(1.0f), 0x3c00);
  EXPECT_EQ(F32ToF16(-2.0f), 0xc000);
  EXPECT_EQ(F32ToF16(0.0f), 0x0000);
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToF16(0.1f), 0x2e66);
  EXPECT_EQ(F32ToF16(1.0f / 3.0f), 0x3555);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bff);  // Largest finite.
  EXPECT_EQ(F32ToF16(65519.99f), 0x7bff);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);  // The tie with 2^16 goes to infinity (even).
  EXPECT_EQ(F32ToF16(1e10f), 0x7c00);
  EXPECT_EQ(F32ToF16(-1e10f), 0xfc00);
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(F32ToF16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14)), 0x0400);     // Smallest normal.
  EXPECT_EQ(F32ToF16(std::ldexp(1023.0f, -24)), 0x03ff);  // Largest subnormal.
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -24)), 0x0001);     // Smallest subnormal.
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);     // Tie with zero: even.
  EXPECT_EQ(F32ToF16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);     // Tie between 1 and 2 units: even.
  EXPECT_EQ(F32ToF16(std::ldexp(5.0f, -25)), 0x0002);     // Tie between 2 and 3 units: even.
  EXPECT_EQ(F32ToF16(std::ldexp(2047.0f, -25)), 0x0400);  // Rounds up into the normals.
  EXPECT_EQ(F32ToF16(-std::ldexp(1.0f, -24)), 0x8001);
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // Tie, even: down.
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(3.0f, -11)), 0x3c02);  // Tie, odd: up.

  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xc000), -2.0f);
  EXPECT_EQ(F16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToF32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_EQ(F16ToF32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToF32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(BitsOf(F16ToF32(0x8000)), 0x80000000u);
  EXPECT_EQ(F16ToF32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(F16ToF32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(F16ToF32(0x7e00)));
  EXPECT_TRUE(std::isnan(F16ToF32(0x7c01)));  // Signalling NaN stays NaN.
}

TEST(F16Test, NanStaysNan) {
  for (const uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
    const uint16_t h = F32ToF16(Bits(nan));
    EXPECT_TRUE(std::isnan(F16ToF32(h))) << std::hex << nan;
    EXPECT_EQ(h & 0x8000, (nan >> 16) & 0x8000);
  }
}

TEST(F16Test, EveryValueRoundTrips) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(f))));
    } else {
      ASSERT_EQ(F32ToF16(f), h) << std::hex << h;
    }
  }
}

TEST(F16Test, MidpointsRoundToEven) {
  // Between each pair of adjacent finite positive halves: the midpoint goes to the even one, the
  // floats just beside it to the nearer one.
  for (uint32_t h = 0; h < 0x7bff; ++h) {
    const double lo = F16ToF32(static_cast<uint16_t>(h));
    const double hi = F16ToF32(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((lo + hi) / 2);  // Exact in fp32.
    ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2);
    const uint16_t even = (h & 1) ? h + 1 : h;
    ASSERT_EQ(F32ToF16(mid), even) << std::hex << h;
    ASSERT_EQ(F32ToF16(std::nextafter(mid, 0.0f)), h) << std::hex << h;
    ASSERT_EQ(F32ToF16(std::nextafter(mid, 1e6f)), h + 1) << std::hex << h;
    ASSERT_EQ(F32ToF16(-mid), 0x8000 | even) << std::hex << h;
  }
}

#if defined(__FLT16_MAX__)
TEST(F16Test, MatchesCompilerConversion) {
  for (uint64_t b = 0; b < (1ull << 32); b += 997) {
    const float x = Bits(static_cast<uint32_t>(b));
    if (std::isnan(x)) continue;
    const _Float16 h = static_cast<_Float16>(x);
    uint16_t expected;
    std::memcpy(&expected, &h, 2);
    ASSERT_EQ(F32ToF16(x), expected) << std::hex << b;
  }
}
#endif

TEST(ConvertToF32Test, EveryDType) {
  const std::vector<float> values = {1.0f, -2.5f, 0.0f, 65504.0f, std::ldexp(1.0f, -24), 0.375f};
  std::vector<float> out(values.size());

  std::vector<std::byte> f32(values.size() * 4);
  std::memcpy(f32.data(), values.data(), f32.size());
  ConvertToF32(TensorView{DType::kF32, {2, 3}, f32}, out);
  EXPECT_EQ(out, values);

  // Unaligned source bytes: start one byte into a buffer.
  std::vector<std::byte> buffer(1 + values.size() * 2);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t h = F32ToF16(values[i]);
    std::memcpy(buffer.data() + 1 + 2 * i, &h, 2);
  }
  ConvertToF32(TensorView{DType::kF16, {6}, std::span(buffer).subspan(1)}, out);
  EXPECT_EQ(out, values);

  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t b = F32ToBf16(values[i]);
    std::memcpy(buffer.data() + 1 + 2 * i, &b, 2);
  }
  ConvertToF32(TensorView{DType::kBF16, {3, 2}, std::span(buffer).subspan(1)}, out);
  // 65504 is not a bf16 value: it rounds to 65536.
  std::vector<float> expected = values;
  expected[3] = 65536.0f;
  EXPECT_EQ(out, expected);
}

TEST(ConvertToF32Test, EmptyTensor) {
  std::vector<float> out;
  ConvertToF32(TensorView{DType::kBF16, {0, 4}, {}}, out);
  EXPECT_TRUE(out.empty());
}

TEST(ConvertToF32DeathTest, SizeMismatchAborts) {
  std::vector<std::byte> bytes(8);
  std::vector<float> out(3);
  EXPECT_DEATH(ConvertToF32(TensorView{DType::kF32, {2}, bytes}, out), "check failed");
}

}  // namespace
}  // namespace tandem::model
