// When each request of a run is released: the trace's own timestamps, or a Poisson or gamma
// process at a given rate (vLLM's --request-rate / --burstiness), or all at once.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include "cli/bench/dataset.h"

namespace tandem::bench {

struct ArrivalOptions {
  // Requests per second; infinity releases every request at once. Unset: the trace's
  // timestamps when the dataset has them, else infinity.
  std::optional<double> request_rate;
  // Gamma shape k of the gaps (mean 1/rate): 1 is Poisson, below 1 burstier, above 1 more even.
  double burstiness = 1.0;
  // Trace time is divided by this (2 replays a trace twice as fast).
  double speedup = 1.0;
  // Seeds the gaps.
  uint64_t seed = 0;
};

// Release offsets in seconds from the start of the run, one per request of `dataset`, never
// decreasing.
std::vector<double> ArrivalOffsets(const Dataset& dataset, const ArrivalOptions& options);

// `n` offsets whose gaps are Gamma(shape = burstiness, mean = 1 / rate); the first is 0.
std::vector<double> GammaArrivals(size_t n, double rate, double burstiness, uint64_t seed);

// The trace's timestamps divided by `speedup`, made non-decreasing (an entry earlier than the one
// before it is released right after it).
std::vector<double> TraceArrivals(std::span<const RequestSpec> requests, double speedup);

}  // namespace tandem::bench
