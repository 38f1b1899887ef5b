// Logging set-up: spdlog to stderr (journald collects it). Messages are a lowercase event then
// logfmt key=value pairs, e.g. `spdlog::info("engine started model={} blocks={}", ...)`. A value
// that may hold spaces, quotes or '=' (error messages, paths, names from users) goes through
// Quoted(), which writes it as logfmt wants: bare when it is a plain token, else in double quotes
// with \" and \\ escaped.
//
// Two line formats:
//   text: `2026-12-07T17:42:53.123 info [worker-0] worker ready grpc=127.0.0.1:50051`
//   json: `{"time":"2026-12-07T17:42:53.123Z","level":"info","daemon":"worker-0",
//          "msg":"worker ready","grpc":"127.0.0.1:50051"}` (one object per line; the message's
//          logfmt pairs become fields, numbers stay numbers)
// The daemon name ("[worker-0]", "daemon") comes from the TANDEM_LOG_NAME environment variable,
// which `tandem serve` sets for each daemon it starts so its merged output says who wrote each
// line; without it the name is left out.
//
// Thread safety: InitLogging is called once, from main, before other threads log.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem {

// Installs the stderr logger. `level` is trace|debug|info|warn|error|off; `format` text|json.
Status InitLogging(std::string_view level, std::string_view format = "text");

// A logfmt value; see the header comment.
struct LogQuoted {
  std::string_view text;
};
inline LogQuoted Quoted(std::string_view text) { return {text}; }

// `text` as a logfmt value (quoted and escaped when needed).
std::string LogfmtValue(std::string_view text);

// One parsed message: its event and its key=value pairs (values unquoted). Used by the json
// format and by tests that check every line is well-formed logfmt.
struct LogfmtMessage {
  std::string event;
  std::vector<std::pair<std::string, std::string>> fields;
};
// Errors: a value whose quotes do not close, or text after the pairs that is not a pair.
StatusOr<LogfmtMessage> ParseLogfmt(std::string_view message);

}  // namespace tandem

template <>
struct fmt::formatter<tandem::LogQuoted> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(const tandem::LogQuoted& q, FormatContext& ctx) const {
    const std::string value = tandem::LogfmtValue(q.text);
    return fmt::formatter<std::string_view>::format(std::string_view(value), ctx);
  }
};
