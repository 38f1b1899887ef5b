// Logging set-up: spdlog to stderr (journald collects it). Messages are a lowercase event then
// key=value pairs, e.g. `spdlog::info("engine started model={} blocks={}", ...)`.
#pragma once

#include <string_view>

#include "tandem/status.h"

namespace tandem {

// Installs the stderr logger. `level` is trace|debug|info|warn|error|off.
Status InitLogging(std::string_view level);

}  // namespace tandem
