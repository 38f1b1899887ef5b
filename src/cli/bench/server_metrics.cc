#include "cli/bench/server_metrics.h"

#include <cstdlib>
#include <string>

#include "cli/bench/http_get.h"

namespace tandem::bench {
namespace {

// The value of the sample line `name value` (exact name with labels), if present.
std::optional<double> Sample(std::string_view text, std::string_view name) {
  size_t at = 0;
  while ((at = text.find(name, at)) != std::string_view::npos) {
    const bool line_start = at == 0 || text[at - 1] == '\n';
    const size_t value_at = at + name.size();
    if (line_start && value_at < text.size() && text[value_at] == ' ') {
      const size_t end = text.find('\n', value_at);
      const std::string value(
          text.substr(value_at + 1, end == std::string_view::npos ? end : end - value_at - 1));
      char* parsed_end = nullptr;
      const double v = std::strtod(value.c_str(), &parsed_end);
      if (parsed_end != value.c_str()) return v;
      return std::nullopt;
    }
    at = value_at;
  }
  return std::nullopt;
}

}  // namespace

std::optional<MockTimes> ParseMockTimes(std::string_view metrics_text) {
  const auto expected =
      Sample(metrics_text, R"(tandem_frontend_mock_step_seconds{kind="expected"})");
  const auto actual = Sample(metrics_text, R"(tandem_frontend_mock_step_seconds{kind="actual"})");
  if (!expected || !actual) return std::nullopt;
  return MockTimes{.expected_seconds = *expected, .actual_seconds = *actual};
}

std::optional<MockTimes> ReadMockTimes(HttpClient& client, const ServerAddress& server,
                                       const std::string& api_key) {
  std::string root = server.api_prefix;
  if (root.ends_with("/v1")) root.resize(root.size() - 3);
  StatusOr<std::string> text = HttpGetBody(client, server, root + "/metrics", api_key);
  if (!text.ok()) return std::nullopt;
  return ParseMockTimes(*text);
}

std::optional<MockSlip> SlipBetween(const MockTimes& before, const MockTimes& after) {
  MockSlip slip;
  slip.expected_seconds = after.expected_seconds - before.expected_seconds;
  slip.actual_seconds = after.actual_seconds - before.actual_seconds;
  if (!(slip.expected_seconds > 0) || slip.actual_seconds < 0) return std::nullopt;
  slip.slip_fraction = (slip.actual_seconds - slip.expected_seconds) / slip.expected_seconds;
  slip.valid = slip.slip_fraction <= kMaxValidSlip;
  return slip;
}

}  // namespace tandem::bench
