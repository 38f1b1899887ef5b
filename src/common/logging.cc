#include "common/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <string>

namespace tandem {

Status InitLogging(std::string_view level) {
  const auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return InvalidArgumentError("--log-level: unknown level '" + std::string(level) +
                                "' (trace, debug, info, warn, error, off)");
  }
  auto logger = spdlog::stderr_logger_mt("tandem");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  logger->set_level(parsed);
  spdlog::set_default_logger(std::move(logger));
  return OkStatus();
}

}  // namespace tandem
