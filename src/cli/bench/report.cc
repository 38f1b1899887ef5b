#include "cli/bench/report.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <string>

namespace tandem::bench {
namespace {

using Json = nlohmann::json;

// Microsecond resolution is all a network measurement has; it keeps the files small.
double Round3(double v) { return std::round(v * 1e3) / 1e3; }

Json OrNull(const std::optional<double>& v) { return v ? Json(Round3(*v)) : Json(nullptr); }

Json StatsJson(const LatencyStats& s) {
  return Json{{"mean", OrNull(s.mean)},
              {"p50", OrNull(s.p50)},
              {"p90", OrNull(s.p90)},
              {"p99", OrNull(s.p99)},
              {"count", s.count}};
}

// The first message seen of each error kind.
std::map<std::string, std::string> ErrorExamples(std::span<const RequestRecord> records) {
  std::map<std::string, std::string> examples;
  for (const RequestRecord& r : records) {
    if (r.failed()) examples.emplace(r.error_kind, r.error_message);
  }
  return examples;
}

std::string Cell(const std::optional<double>& v) {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", *v);
  return buf;
}

}  // namespace

Json SummaryJson(const RunSummary& s) {
  return Json{{"completed", s.completed},
              {"failed", s.failed},
              {"cancelled", s.cancelled},
              {"not_sent", s.not_sent},
              {"duration_s", Round3(s.duration_s)},
              {"request_throughput", Round3(s.request_throughput)},
              {"output_throughput", Round3(s.output_throughput)},
              {"goodput", OrNull(s.goodput)},
              {"total_prompt_tokens", s.total_prompt_tokens},
              {"total_output_tokens", s.total_output_tokens},
              {"cached_prompt_tokens_fraction",
               s.cached_prompt_tokens_fraction
                   ? Json(std::round(*s.cached_prompt_tokens_fraction * 1e6) / 1e6)
                   : Json(nullptr)},
              {"ttft_ms", StatsJson(s.ttft_ms)},
              {"tpot_ms", StatsJson(s.tpot_ms)},
              {"itl_ms", StatsJson(s.itl_ms)},
              {"e2e_ms", StatsJson(s.e2e_ms)}};
}

Json RunJson(const Json& config, const RunSummary& summary,
             std::span<const RequestRecord> records) {
  Json requests = Json::array();
  for (const RequestRecord& r : records) {
    if (!r.sent) continue;
    const RequestTimings t = ComputeTimings(r);
    Json itl = Json::array();
    for (double gap : t.itl_s) itl.push_back(Round3(gap * 1e3));
    requests.push_back(
        Json{{"index", r.index},
             {"scheduled_s", Round3(r.scheduled_s * 1e3) / 1e3},
             {"start_s", Round3(r.start_s * 1e3) / 1e3},
             {"prompt_tokens", r.prompt_tokens},
             {"output_tokens", r.output_tokens},
             {"cached_tokens", r.cached_tokens >= 0 ? Json(r.cached_tokens) : Json(nullptr)},
             {"ttft_ms", t.ttft_s ? Json(Round3(*t.ttft_s * 1e3)) : Json(nullptr)},
             {"tpot_ms", t.tpot_s ? Json(Round3(*t.tpot_s * 1e3)) : Json(nullptr)},
             {"itl_ms", std::move(itl)},
             {"e2e_ms", Round3(t.e2e_s * 1e3)},
             {"error", r.error_kind.empty()
                           ? Json(nullptr)
                           : Json{{"kind", r.error_kind}, {"message", r.error_message}}}});
  }
  return Json{{"format", kReportFormat},
              {"config", config},
              {"summary", SummaryJson(summary)},
              {"errors", summary.errors},
              {"error_examples", ErrorExamples(records)},
              {"requests", std::move(requests)}};
}

void PrintRunTable(std::FILE* out, std::string_view title, const RunSummary& s,
                   std::span<const RequestRecord> records) {
  std::fprintf(out, "==== %.*s ====\n", static_cast<int>(title.size()), title.data());
  std::fprintf(out, "%-34s %lld / %lld / %lld\n", "completed / failed / cancelled",
               static_cast<long long>(s.completed), static_cast<long long>(s.failed),
               static_cast<long long>(s.cancelled));
  if (s.not_sent > 0) {
    std::fprintf(out, "%-34s %lld\n", "not sent (run cut)", static_cast<long long>(s.not_sent));
  }
  std::fprintf(out, "%-34s %.2f\n", "duration (s)", s.duration_s);
  std::fprintf(out, "%-34s %.2f\n", "request throughput (req/s)", s.request_throughput);
  std::fprintf(out, "%-34s %.2f\n", "output throughput (tok/s)", s.output_throughput);
  if (s.goodput) std::fprintf(out, "%-34s %.2f\n", "goodput (req/s)", *s.goodput);
  std::fprintf(out, "%-34s %lld / %lld\n", "prompt / output tokens",
               static_cast<long long>(s.total_prompt_tokens),
               static_cast<long long>(s.total_output_tokens));
  if (s.cached_prompt_tokens_fraction) {
    std::fprintf(out, "%-34s %.1f%%\n", "prompt tokens from cache",
                 *s.cached_prompt_tokens_fraction * 100);
  } else {
    std::fprintf(out, "%-34s %s\n", "prompt tokens from cache", "unknown (not reported)");
  }
  std::fprintf(out, "%-10s %10s %10s %10s %10s\n", "(ms)", "mean", "p50", "p90", "p99");
  const std::pair<const char*, const LatencyStats*> rows[] = {
      {"TTFT", &s.ttft_ms}, {"TPOT", &s.tpot_ms}, {"ITL", &s.itl_ms}, {"E2E", &s.e2e_ms}};
  for (const auto& [name, stats] : rows) {
    std::fprintf(out, "%-10s %10s %10s %10s %10s\n", name, Cell(stats->mean).c_str(),
                 Cell(stats->p50).c_str(), Cell(stats->p90).c_str(), Cell(stats->p99).c_str());
  }
  const auto examples = ErrorExamples(records);
  for (const auto& [kind, count] : s.errors) {
    auto it = examples.find(kind);
    std::fprintf(out, "error %s: %lld (%s)\n", kind.c_str(), static_cast<long long>(count),
                 it == examples.end() ? "" : it->second.c_str());
  }
}

}  // namespace tandem::bench
