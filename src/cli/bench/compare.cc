#include "cli/bench/compare.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <vector>

#include "common/file_util.h"
#include "common/status_macros.h"

namespace tandem::bench {
namespace {

using Json = nlohmann::json;

// The runs of a report: its "runs", or the report itself.
StatusOr<std::vector<const Json*>> Runs(const Json& report, std::string_view name) {
  std::vector<const Json*> runs;
  if (report.is_object() && report.contains("runs") && report["runs"].is_array()) {
    for (const Json& run : report["runs"]) runs.push_back(&run);
  } else {
    runs.push_back(&report);
  }
  for (const Json* run : runs) {
    if (!run->is_object() || !run->contains("summary") || !(*run)["summary"].is_object()) {
      return InvalidArgumentError(std::string(name) +
                                  ": not a tandem bench report (no \"summary\" object)");
    }
  }
  return runs;
}

// summary[key] or summary[key][sub] as a number.
std::optional<double> Figure(const Json& summary, const std::string& key, const char* sub) {
  auto it = summary.find(key);
  if (it == summary.end()) return std::nullopt;
  const Json* v = &*it;
  if (sub != nullptr) {
    if (!v->is_object() || !v->contains(sub)) return std::nullopt;
    v = &(*v)[sub];
  }
  if (!v->is_number()) return std::nullopt;
  return v->get<double>();
}

std::string Number(const std::optional<double>& v) {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", *v);
  return buf;
}

std::string Line(std::string_view name, const std::optional<double>& a,
                 const std::optional<double>& b) {
  std::string ratio = "-";
  if (a && b && *a != 0) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.3f", *b / *a);
    ratio = buf;
  }
  char line[160];
  std::snprintf(line, sizeof(line), "%-30.*s %14s %14s %9s\n", static_cast<int>(name.size()),
                name.data(), Number(a).c_str(), Number(b).c_str(), ratio.c_str());
  return line;
}

std::string CompareRun(const Json& a, const Json& b) {
  const Json& sa = a["summary"];
  const Json& sb = b["summary"];
  std::string out;
  for (const char* key : {"completed", "failed", "duration_s", "request_throughput",
                          "output_throughput", "goodput", "cached_prompt_tokens_fraction"}) {
    out += Line(key, Figure(sa, key, nullptr), Figure(sb, key, nullptr));
  }
  for (const char* key : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"}) {
    for (const char* sub : {"mean", "p50", "p90", "p99"}) {
      out += Line(std::string(key) + " " + sub, Figure(sa, key, sub), Figure(sb, key, sub));
    }
  }
  return out;
}

std::optional<double> Rate(const Json& run) {
  if (!run.contains("config") || !run["config"].is_object()) return std::nullopt;
  const Json& config = run["config"];
  if (!config.contains("request_rate") || !config["request_rate"].is_number()) return std::nullopt;
  return config["request_rate"].get<double>();
}

}  // namespace

StatusOr<Json> LoadReport(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  Json report = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (report.is_discarded()) return InvalidArgumentError(path + ": not valid JSON");
  return report;
}

StatusOr<std::string> CompareReports(const Json& a, const Json& b, std::string_view name_a,
                                     std::string_view name_b) {
  TANDEM_ASSIGN_OR_RETURN(const std::vector<const Json*> runs_a, Runs(a, name_a));
  TANDEM_ASSIGN_OR_RETURN(const std::vector<const Json*> runs_b, Runs(b, name_b));
  std::string out = "A: " + std::string(name_a) + "\nB: " + std::string(name_b) + "\n";
  if (runs_a.size() != runs_b.size()) {
    out += "note: A has " + std::to_string(runs_a.size()) + " runs, B has " +
           std::to_string(runs_b.size()) + "; comparing the first " +
           std::to_string(std::min(runs_a.size(), runs_b.size())) + "\n";
  }
  for (size_t i = 0; i < std::min(runs_a.size(), runs_b.size()); ++i) {
    const std::optional<double> ra = Rate(*runs_a[i]), rb = Rate(*runs_b[i]);
    if (runs_a.size() > 1 || runs_b.size() > 1) {
      out += "run " + std::to_string(i + 1) + " (request rate " + Number(ra) + " vs " + Number(rb) +
             ")\n";
    }
    if (ra != rb && runs_a.size() == 1) {
      out += "note: request rates differ (" + Number(ra) + " vs " + Number(rb) + ")\n";
    }
    char head[160];
    std::snprintf(head, sizeof(head), "%-30s %14s %14s %9s\n", "", "A", "B", "B/A");
    out += head;
    out += CompareRun(*runs_a[i], *runs_b[i]);
  }
  return out;
}

StatusOr<std::string> CompareReportFiles(const std::string& path_a, const std::string& path_b) {
  TANDEM_ASSIGN_OR_RETURN(const Json a, LoadReport(path_a));
  TANDEM_ASSIGN_OR_RETURN(const Json b, LoadReport(path_b));
  return CompareReports(a, b, path_a, path_b);
}

}  // namespace tandem::bench
