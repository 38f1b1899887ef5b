// The report of a run: the table printed on stdout and the JSON document (its layout is
// documented in README.md and kept stable: fields are added, never renamed or removed).
//
// Thread safety: pure functions.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdio>
#include <span>
#include <string_view>

#include "cli/bench/metrics.h"

namespace tandem::bench {

// The value of the "format" member of every report.
inline constexpr std::string_view kReportFormat = "tandem-bench/1";

// One run: {"config", "summary", "errors", "error_examples", "requests"}. `config` is copied
// in as given (the flags of the run).
nlohmann::json RunJson(const nlohmann::json& config, const RunSummary& summary,
                       std::span<const RequestRecord> records);

// The summary object alone (also what compare reads).
nlohmann::json SummaryJson(const RunSummary& summary);

// The run's table, headed by `title`; error kinds with one example message each.
void PrintRunTable(std::FILE* out, std::string_view title, const RunSummary& summary,
                   std::span<const RequestRecord> records);

}  // namespace tandem::bench
