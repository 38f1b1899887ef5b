// Running the real `tandem` binary from tests.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace tandem::cli::testing {

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `build/bin/tandem ARGS` through the shell (ARGS may redirect stdin).
Result RunTandem(const std::string& args);

// Exactly one line on stderr, containing `expect` (a file, a field, a value), a non-zero exit,
// and no crash.
void ExpectOneLineError(const Result& r, const std::string& expect);

// A fresh temporary directory per test, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  std::filesystem::path dir_;
};

}  // namespace tandem::cli::testing
