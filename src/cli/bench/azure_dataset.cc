// Azure LLM inference trace (2023): CSV with header TIMESTAMP,ContextTokens,GeneratedTokens and
// rows like `2023-11-16 18:17:03.9799600,4808,10`.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>

#include "cli/bench/dataset.h"
#include "cli/bench/trace_lines.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace tandem::bench {
namespace {

bool ParseInt(std::string_view text, int64_t* out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

// "YYYY-MM-DD HH:MM:SS[.fraction]" -> seconds since the Unix epoch (UTC; only differences matter).
StatusOr<double> ParseTimestamp(std::string_view text) {
  auto bad = [&] {
    return InvalidArgumentError("TIMESTAMP '" + std::string(text) +
                                "' is not YYYY-MM-DD HH:MM:SS[.fraction]");
  };
  if (text.size() < 19 || text[4] != '-' || text[7] != '-' || text[10] != ' ' || text[13] != ':' ||
      text[16] != ':') {
    return bad();
  }
  int64_t y, mo, d, h, mi, s;
  if (!ParseInt(text.substr(0, 4), &y) || !ParseInt(text.substr(5, 2), &mo) ||
      !ParseInt(text.substr(8, 2), &d) || !ParseInt(text.substr(11, 2), &h) ||
      !ParseInt(text.substr(14, 2), &mi) || !ParseInt(text.substr(17, 2), &s) || h > 23 ||
      mi > 59 || s > 60) {
    return bad();
  }
  const std::chrono::year_month_day date{std::chrono::year(static_cast<int>(y)),
                                         std::chrono::month(static_cast<unsigned>(mo)),
                                         std::chrono::day(static_cast<unsigned>(d))};
  if (!date.ok()) return bad();
  double fraction = 0;
  std::string_view rest = text.substr(19);
  if (!rest.empty()) {
    int64_t digits = 0;
    if (rest[0] != '.' || rest.size() > 19 || !ParseInt(rest.substr(1), &digits) || digits < 0) {
      return bad();
    }
    fraction = static_cast<double>(digits) / std::pow(10.0, static_cast<double>(rest.size() - 1));
  }
  const int64_t days = std::chrono::sys_days(date).time_since_epoch().count();
  return static_cast<double>(days * 86400 + h * 3600 + mi * 60 + s) + fraction;
}

StatusOr<RequestSpec> ParseRow(std::string_view line, double* first_time) {
  const size_t c1 = line.find(',');
  const size_t c2 = c1 == std::string_view::npos ? c1 : line.find(',', c1 + 1);
  if (c2 == std::string_view::npos || line.find(',', c2 + 1) != std::string_view::npos) {
    return InvalidArgumentError("expected 3 comma-separated fields");
  }
  TANDEM_ASSIGN_OR_RETURN(const double time, ParseTimestamp(line.substr(0, c1)));
  int64_t context = 0, generated = 0;
  if (!ParseInt(line.substr(c1 + 1, c2 - c1 - 1), &context) || context < 0 || context > (1 << 30)) {
    return InvalidArgumentError("ContextTokens is not a non-negative integer");
  }
  if (!ParseInt(line.substr(c2 + 1), &generated) || generated < 0 || generated > (1 << 30)) {
    return InvalidArgumentError("GeneratedTokens is not a non-negative integer");
  }
  if (*first_time < 0) *first_time = time;
  RequestSpec spec;
  spec.timestamp_s = std::max(0.0, time - *first_time);
  // A request needs a prompt and max_tokens >= 1; the trace has a few zeros.
  spec.input_len = std::max<int>(1, static_cast<int>(context));
  spec.output_len = std::max<int>(1, static_cast<int>(generated));
  return spec;
}

}  // namespace

StatusOr<Dataset> LoadAzure(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  Dataset dataset;
  dataset.kind = DatasetKind::kAzure;
  dataset.has_timestamps = true;
  bool header = true;
  double first_time = -1;
  TANDEM_RETURN_IF_ERROR(ForEachTraceLine(text, [&](int number, std::string_view line) {
    const std::string where = path + ":" + std::to_string(number);
    if (header) {
      header = false;
      if (line != "TIMESTAMP,ContextTokens,GeneratedTokens") {
        return InvalidArgumentError(
            where + ": expected the header TIMESTAMP,ContextTokens,GeneratedTokens");
      }
      return OkStatus();
    }
    StatusOr<RequestSpec> spec = ParseRow(line, &first_time);
    if (!spec.ok()) return spec.status().WithContext(where);
    dataset.requests.push_back(std::move(spec).value());
    return OkStatus();
  }));
  return dataset;
}

}  // namespace tandem::bench
