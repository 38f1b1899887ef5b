#include "common/parse.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

TEST(ParseIntListTest, ParsesCommaSeparatedIntegers) {
  EXPECT_EQ(*ParseIntList("1,2,3", "--x"), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(*ParseIntList("-5", "--x"), (std::vector<int32_t>{-5}));
}

TEST(ParseIntListTest, RejectsBadItemsNamingTheOption) {
  for (const char* bad : {"", "1,", ",1", "1,,2", "1,x", "1.5", "99999999999", "1 ,2"}) {
    auto r = ParseIntList(bad, "--prompt-tokens");
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--prompt-tokens"), std::string::npos);
  }
}

TEST(ParseByteSizeTest, BinaryAndDecimalUnits) {
  EXPECT_EQ(*ParseByteSize("512", "--s"), 512u);
  EXPECT_EQ(*ParseByteSize("64KiB", "--s"), 64u << 10);
  EXPECT_EQ(*ParseByteSize("256MiB", "--s"), 256u << 20);
  EXPECT_EQ(*ParseByteSize("8GiB", "--s"), 8ull << 30);
  EXPECT_EQ(*ParseByteSize("2GB", "--s"), 2000000000u);
}

TEST(ParseByteSizeTest, RejectsGarbageAndOverflow) {
  for (const char* bad : {"", "MiB", "12XB", "-1GiB", "1.5GiB", "99999999999TiB"}) {
    EXPECT_FALSE(ParseByteSize(bad, "--s").ok()) << bad;
  }
}

}  // namespace
}  // namespace tandem
