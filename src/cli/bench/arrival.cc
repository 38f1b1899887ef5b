#include "cli/bench/arrival.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace tandem::bench {

std::vector<double> GammaArrivals(size_t n, double rate, double burstiness, uint64_t seed) {
  std::vector<double> out(n, 0.0);
  if (!std::isfinite(rate)) return out;
  std::mt19937_64 rng(seed);
  // Shape k and scale 1/(rate*k) give mean 1/rate and coefficient of variation 1/sqrt(k).
  std::gamma_distribution<double> gap(burstiness, 1.0 / (rate * burstiness));
  for (size_t i = 1; i < n; ++i) out[i] = out[i - 1] + gap(rng);
  return out;
}

std::vector<double> TraceArrivals(std::span<const RequestSpec> requests, double speedup) {
  std::vector<double> out;
  out.reserve(requests.size());
  double last = 0;
  for (const RequestSpec& r : requests) {
    last = std::max(last, r.timestamp_s.value_or(0.0) / speedup);
    out.push_back(last);
  }
  return out;
}

std::vector<double> ArrivalOffsets(const Dataset& dataset, const ArrivalOptions& options) {
  if (!options.request_rate && dataset.has_timestamps) {
    return TraceArrivals(dataset.requests, options.speedup);
  }
  const double rate = options.request_rate.value_or(std::numeric_limits<double>::infinity());
  return GammaArrivals(dataset.requests.size(), rate, options.burstiness, options.seed);
}

}  // namespace tandem::bench
