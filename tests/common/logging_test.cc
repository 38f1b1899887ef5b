// Issue 14 item 11: log values with spaces are quoted (logfmt), and --log-format json writes one
// JSON object per line with the message's pairs as fields.
#include "common/logging.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace tandem {
namespace {

TEST(LogfmtTest, PlainTokensStayBareEverythingElseIsQuoted) {
  EXPECT_EQ(LogfmtValue("127.0.0.1:8000"), "127.0.0.1:8000");
  EXPECT_EQ(LogfmtValue(""), "\"\"");
  EXPECT_EQ(LogfmtValue("INVALID_ARGUMENT: temperature must be >= 0"),
            "\"INVALID_ARGUMENT: temperature must be >= 0\"");
  EXPECT_EQ(LogfmtValue("a=b"), "\"a=b\"");
  EXPECT_EQ(LogfmtValue("say \"hi\"\\\n"), "\"say \\\"hi\\\"\\\\\\n\"");
  EXPECT_EQ(fmt::format("error={}", Quoted("no such file")), "error=\"no such file\"");
}

TEST(LogfmtTest, ParsesWhatItWrites) {
  const std::string value = "a \"quoted\" = \\ value\nwith a newline";
  const std::string line = fmt::format("request failed request_id=cmpl-1 error={} tokens=3 x={}",
                                       Quoted(value), Quoted(""));
  auto parsed = ParseLogfmt(line);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->event, "request failed");
  ASSERT_EQ(parsed->fields.size(), 4u);
  EXPECT_EQ(parsed->fields[0], (std::pair<std::string, std::string>("request_id", "cmpl-1")));
  EXPECT_EQ(parsed->fields[1].second, value);
  EXPECT_EQ(parsed->fields[2].second, "3");
  EXPECT_EQ(parsed->fields[3].second, "");
}

TEST(LogfmtTest, RefusesWhatIsNotLogfmt) {
  // The defect of issue 14: an unquoted value with spaces leaves words that are not pairs.
  EXPECT_FALSE(ParseLogfmt("bad error=INVALID_ARGUMENT: temperature must be >= 0").ok());
  EXPECT_FALSE(ParseLogfmt("bad error=\"not closed").ok());
  EXPECT_FALSE(ParseLogfmt("bad error=un\"quoted").ok());
  EXPECT_TRUE(ParseLogfmt("just an event").ok());
}

// Runs `body` with stderr captured into a file; returns what was written.
template <typename Body>
std::string CaptureStderr(Body body) {
  char path[] = "/tmp/tandem_logging_test_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  body();
  spdlog::default_logger()->flush();
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  unlink(path);
  return text;
}

TEST(LoggingTest, JsonFormatWritesOneObjectPerLineWithTheDaemonName) {
  setenv("TANDEM_LOG_NAME", "worker-3", 1);
  ASSERT_TRUE(InitLogging("info", "json").ok());
  const std::string out = CaptureStderr([] {
    spdlog::warn("worker down worker={} error={} in_flight={} ratio={}", "127.0.0.1:1",
                 Quoted("Socket closed: \"x\""), 4, 0.5);
    spdlog::info("odd message with \"quotes\" and no pairs");
  });
  unsetenv("TANDEM_LOG_NAME");
  std::istringstream lines(out);
  std::string line;
  std::getline(lines, line);
  const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  ASSERT_TRUE(j.is_object()) << line;
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["daemon"], "worker-3");
  EXPECT_EQ(j["msg"], "worker down");
  EXPECT_EQ(j["worker"], "127.0.0.1:1");
  EXPECT_EQ(j["error"], "Socket closed: \"x\"");
  EXPECT_EQ(j["in_flight"], 4);
  EXPECT_EQ(j["ratio"], 0.5);
  EXPECT_TRUE(j["time"].get<std::string>().ends_with("Z"));
  std::getline(lines, line);
  const nlohmann::json second = nlohmann::json::parse(line, nullptr, false);
  ASSERT_TRUE(second.is_object()) << line;
  EXPECT_EQ(second["msg"], "odd message with \"quotes\" and no pairs");
}

TEST(LoggingTest, TextFormatNamesTheDaemon) {
  setenv("TANDEM_LOG_NAME", "frontend", 1);
  ASSERT_TRUE(InitLogging("info", "text").ok());
  const std::string out = CaptureStderr([] { spdlog::info("frontend ready port={}", 8000); });
  unsetenv("TANDEM_LOG_NAME");
  EXPECT_NE(out.find(" info [frontend] frontend ready port=8000"), std::string::npos) << out;
}

TEST(LoggingTest, RefusesUnknownLevelsAndFormats) {
  EXPECT_FALSE(InitLogging("loud", "text").ok());
  EXPECT_FALSE(InitLogging("info", "xml").ok());
}

}  // namespace
}  // namespace tandem
