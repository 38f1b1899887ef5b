#include "cli/bench/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>

namespace tandem::bench {

RequestTimings ComputeTimings(const RequestRecord& r) {
  RequestTimings t;
  t.e2e_s = r.end_s;
  if (!r.content_s.empty()) {
    t.ttft_s = r.content_s.front();
    t.itl_s.reserve(r.content_s.size() - 1);
    for (size_t i = 1; i < r.content_s.size(); ++i) {
      t.itl_s.push_back(r.content_s[i] - r.content_s[i - 1]);
    }
    if (r.output_tokens > 1) {
      t.tpot_s = (r.end_s - *t.ttft_s) / static_cast<double>(r.output_tokens - 1);
    }
  }
  return t;
}

double Percentile(std::span<const double> sorted, double p) {
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

LatencyStats Summarize(std::vector<double> values) {
  LatencyStats s;
  s.count = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  s.p50 = Percentile(values, 50);
  s.p90 = Percentile(values, 90);
  s.p99 = Percentile(values, 99);
  return s;
}

StatusOr<SloOptions> ParseSlo(std::string_view text) {
  SloOptions slo;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view item = text.substr(pos, comma - pos);
    pos = comma + 1;
    const size_t colon = item.find(':');
    const std::string_view name = item.substr(0, colon);
    double ms = 0;
    const std::string_view value =
        colon == std::string_view::npos ? std::string_view() : item.substr(colon + 1);
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
    if (value.empty() || ec != std::errc() || end != value.data() + value.size() || !(ms > 0) ||
        !std::isfinite(ms)) {
      return InvalidArgumentError("--goodput: '" + std::string(item) +
                                  "' is not NAME:MS with a positive number of milliseconds");
    }
    if (name == "ttft") {
      slo.ttft_ms = ms;
    } else if (name == "tpot") {
      slo.tpot_ms = ms;
    } else if (name == "e2e") {
      slo.e2e_ms = ms;
    } else {
      return InvalidArgumentError("--goodput: '" + std::string(name) +
                                  "' is not one of ttft, tpot, e2e");
    }
  }
  return slo;
}

bool MeetsSlo(const RequestTimings& t, const SloOptions& slo) {
  if (slo.ttft_ms && !(t.ttft_s && *t.ttft_s * 1e3 <= *slo.ttft_ms)) return false;
  if (slo.tpot_ms && t.tpot_s && *t.tpot_s * 1e3 > *slo.tpot_ms) return false;
  if (slo.e2e_ms && t.e2e_s * 1e3 > *slo.e2e_ms) return false;
  return true;
}

RunSummary SummarizeRun(std::span<const RequestRecord> records, double duration_s,
                        const SloOptions& slo) {
  RunSummary s;
  s.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  int64_t good = 0, cached = 0, prompt_with_cached = 0;
  bool cached_known = false;
  for (const RequestRecord& r : records) {
    if (!r.sent) {
      ++s.not_sent;
      continue;
    }
    if (r.cancelled()) {
      ++s.cancelled;
      continue;
    }
    if (r.failed()) {
      ++s.failed;
      ++s.errors[r.error_kind];
      continue;
    }
    ++s.completed;
    s.total_prompt_tokens += r.prompt_tokens;
    s.total_output_tokens += r.output_tokens;
    if (r.cached_tokens >= 0) {
      cached_known = true;
      cached += r.cached_tokens;
      prompt_with_cached += r.prompt_tokens;
    }
    const RequestTimings t = ComputeTimings(r);
    if (t.ttft_s) ttft.push_back(*t.ttft_s * 1e3);
    if (t.tpot_s) tpot.push_back(*t.tpot_s * 1e3);
    for (double gap : t.itl_s) itl.push_back(gap * 1e3);
    e2e.push_back(t.e2e_s * 1e3);
    if (slo.any() && MeetsSlo(t, slo)) ++good;
  }
  if (duration_s > 0) {
    s.request_throughput = static_cast<double>(s.completed) / duration_s;
    s.output_throughput = static_cast<double>(s.total_output_tokens) / duration_s;
    if (slo.any()) s.goodput = static_cast<double>(good) / duration_s;
  } else if (slo.any()) {
    s.goodput = 0;
  }
  if (cached_known && prompt_with_cached > 0) {
    s.cached_prompt_tokens_fraction =
        static_cast<double>(cached) / static_cast<double>(prompt_with_cached);
  }
  s.ttft_ms = Summarize(std::move(ttft));
  s.tpot_ms = Summarize(std::move(tpot));
  s.itl_ms = Summarize(std::move(itl));
  s.e2e_ms = Summarize(std::move(e2e));
  return s;
}

}  // namespace tandem::bench
