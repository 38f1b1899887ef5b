// `tandem bench compare A.json B.json`: two reports side by side, with B/A for every figure.
//
// Thread safety: pure functions.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>

#include "tandem/status.h"

namespace tandem::bench {

// Reads a report written by --json-out (one run or a sweep), naming the file in errors.
StatusOr<nlohmann::json> LoadReport(const std::string& path);

// The comparison table. Sweeps are compared run by run (by position); a run count or a
// request rate that differs is noted. Errors: a document that is not a tandem bench report.
StatusOr<std::string> CompareReports(const nlohmann::json& a, const nlohmann::json& b,
                                     std::string_view name_a, std::string_view name_b);

// LoadReport both files, then CompareReports naming them by their paths.
StatusOr<std::string> CompareReportFiles(const std::string& path_a, const std::string& path_b);

}  // namespace tandem::bench
