#include "common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>

namespace tandem {
namespace {

bool IsKeyChar(char c, bool first) {
  const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return first ? alpha : alpha || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

// Length of "key=" at the start of `s`, or 0 when `s` does not start with a key.
size_t KeyPrefix(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && IsKeyChar(s[i], i == 0)) ++i;
  return i > 0 && i < s.size() && s[i] == '=' ? i + 1 : 0;
}

std::string DaemonName() {
  const char* name = std::getenv("TANDEM_LOG_NAME");
  return name != nullptr ? std::string(name) : std::string();
}

// One JSON object per line: time (UTC), level, daemon, msg, then the message's pairs.
class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string daemon) : daemon_(std::move(daemon)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto since_epoch = msg.time.time_since_epoch();
    const std::time_t secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count();
    const int millis = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count() % 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char stamp[64];
    std::snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    const auto level = spdlog::level::to_string_view(msg.level);
    nlohmann::ordered_json line = {{"time", stamp},
                                   {"level", std::string(level.data(), level.size())}};
    if (!daemon_.empty()) line["daemon"] = daemon_;
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    StatusOr<LogfmtMessage> parsed = ParseLogfmt(payload);
    if (!parsed.ok()) {
      line["msg"] = payload;  // Not logfmt: the message whole.
    } else {
      line["msg"] = parsed->event;
      for (const auto& [key, value] : parsed->fields) {
        if (line.contains(key)) continue;  // time, level, daemon, msg stay ours.
        // A bare value JSON reads as a number stays a number.
        nlohmann::ordered_json number =
            nlohmann::ordered_json::parse(value, nullptr, /*allow_exceptions=*/false);
        if (number.is_number()) {
          line[key] = std::move(number);
        } else {
          line[key] = value;
        }
      }
    }
    // Invalid UTF-8 in a message is replaced rather than thrown on.
    const std::string text =
        line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    dest.append(text.data(), text.data() + text.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(daemon_);
  }

 private:
  const std::string daemon_;
};

}  // namespace

std::string LogfmtValue(std::string_view text) {
  bool quote = text.empty();
  for (const char c : text) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      quote = true;
      break;
    }
  }
  if (!quote) return std::string(text);
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

StatusOr<LogfmtMessage> ParseLogfmt(std::string_view message) {
  LogfmtMessage out;
  size_t i = 0;
  // The event: words up to the first key=value.
  while (i < message.size()) {
    while (i < message.size() && message[i] == ' ') ++i;
    if (i >= message.size() || KeyPrefix(message.substr(i)) > 0) break;
    const size_t end = std::min(message.find(' ', i), message.size());
    if (!out.event.empty()) out.event += ' ';
    out.event += message.substr(i, end - i);
    i = end;
  }
  while (i < message.size()) {
    while (i < message.size() && message[i] == ' ') ++i;
    if (i >= message.size()) break;
    const size_t key_len = KeyPrefix(message.substr(i));
    if (key_len == 0) {
      return InvalidArgumentError("logfmt: text after the pairs is not key=value at byte " +
                                  std::to_string(i));
    }
    std::string key(message.substr(i, key_len - 1));
    i += key_len;
    std::string value;
    if (i < message.size() && message[i] == '"') {
      ++i;
      bool closed = false;
      while (i < message.size()) {
        const char c = message[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i < message.size()) {
          const char e = message[i++];
          value.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e);
        } else {
          value.push_back(c);
        }
      }
      if (!closed) return InvalidArgumentError("logfmt: the value of " + key + " is not closed");
      if (i < message.size() && message[i] != ' ') {
        return InvalidArgumentError("logfmt: text right after the quoted value of " + key);
      }
    } else {
      const size_t end = std::min(message.find(' ', i), message.size());
      value = std::string(message.substr(i, end - i));
      if (value.find('"') != std::string::npos) {
        return InvalidArgumentError("logfmt: a quote inside the bare value of " + key);
      }
      i = end;
    }
    out.fields.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

Status InitLogging(std::string_view level, std::string_view format) {
  const auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return InvalidArgumentError("--log-level: unknown level '" + std::string(level) +
                                "' (trace, debug, info, warn, error, off)");
  }
  if (format != "text" && format != "json") {
    return InvalidArgumentError("--log-format: expected text or json, got '" + std::string(format) +
                                "'");
  }
  spdlog::drop("tandem");
  auto logger = spdlog::stderr_logger_mt("tandem");
  const std::string daemon = DaemonName();
  if (format == "json") {
    logger->set_formatter(std::make_unique<JsonFormatter>(daemon));
  } else {
    std::string pattern = "%Y-%m-%dT%H:%M:%S.%e %^%l%$ ";
    if (!daemon.empty()) pattern += "[" + daemon + "] ";
    logger->set_pattern(pattern + "%v");
  }
  logger->set_level(parsed);
  spdlog::set_default_logger(std::move(logger));
  return OkStatus();
}

}  // namespace tandem
