// Issue 14 item 3: where the API key comes from, and the Bearer check (scheme name in any case).
#include "common/api_key.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace tandem {
namespace {

namespace fs = std::filesystem;

TEST(ApiKeyTest, BearerSchemeIsCaseInsensitive) {
  EXPECT_TRUE(BearerMatches("Bearer sesame", "sesame"));
  EXPECT_TRUE(BearerMatches("bearer sesame", "sesame"));
  EXPECT_TRUE(BearerMatches("BEARER  sesame ", "sesame"));
  EXPECT_FALSE(BearerMatches("Bearer Sesame", "sesame"));  // The key itself is exact.
  EXPECT_FALSE(BearerMatches("Bearer sesam", "sesame"));
  EXPECT_FALSE(BearerMatches("Bearer sesame2", "sesame"));
  EXPECT_FALSE(BearerMatches("Basic sesame", "sesame"));
  EXPECT_FALSE(BearerMatches("Bearersesame", "sesame"));
  EXPECT_FALSE(BearerMatches("", "sesame"));
  EXPECT_FALSE(BearerMatches("Bearer ", "sesame"));
}

TEST(ApiKeyTest, FlagThenFileThenEnvironment) {
  const fs::path file = fs::temp_directory_path() / "tandem_api_key_test.txt";
  std::ofstream(file) << "  from-file \nsecond line ignored\n";
  setenv(kApiKeyEnv, "from-env", 1);
  EXPECT_EQ(ResolveApiKey("from-flag", "").value(), "from-flag");
  EXPECT_EQ(ResolveApiKey("", file.string()).value(), "from-file");
  EXPECT_EQ(ResolveApiKey("", "").value(), "from-env");
  unsetenv(kApiKeyEnv);
  EXPECT_FALSE(ResolveApiKey("", "").value().has_value());
  EXPECT_FALSE(ResolveApiKey("a", file.string()).ok());  // Both: ambiguous.
  EXPECT_FALSE(ResolveApiKey("", "/nonexistent/key").ok());
  std::ofstream(file) << "\n";
  EXPECT_FALSE(ResolveApiKey("", file.string()).ok());  // Empty.
  setenv(kApiKeyEnv, " ", 1);
  EXPECT_FALSE(ResolveApiKey("", "").ok());
  unsetenv(kApiKeyEnv);
  fs::remove(file);
}

TEST(ApiKeyTest, HideArgValueBlanksTheKeyInPlace) {
  std::string a0 = "tandem", a1 = "--api-key", a2 = "secret", a3 = "--api-key=other",
              a4 = "--api-key-file", a5 = "path";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data(), a5.data()};
  HideArgValue(6, argv, "--api-key");
  EXPECT_STREQ(argv[2], "xxxxxx");
  EXPECT_STREQ(argv[3], "--api-key=xxxxx");
  EXPECT_STREQ(argv[5], "path");
}

}  // namespace
}  // namespace tandem
