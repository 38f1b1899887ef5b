// What a tandem server says about itself on GET /metrics that a benchmark reports beside its
// run: the mock workers' simulated step time against the real time the steps took. Their
// difference is slip — the machine could not keep up with the simulation — and a run whose slip
// passes kMaxValidSlip of the simulated time is marked invalid.
//
// Thread safety: pure functions, and a client used from the calling thread only.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "cli/bench/http_client.h"
#include "cli/bench/url.h"

namespace tandem::bench {

inline constexpr double kMaxValidSlip = 0.05;

// tandem_frontend_mock_step_seconds{kind="expected"|"actual"}, summed over the mock workers.
struct MockTimes {
  double expected_seconds = 0;
  double actual_seconds = 0;
};

// nullopt when the text has no such samples (not tandem, or workers on a real backend).
std::optional<MockTimes> ParseMockTimes(std::string_view metrics_text);

// GET /metrics at the root of the server's address (the API prefix without "/v1"); nullopt when
// it cannot be read or has no mock figures.
std::optional<MockTimes> ReadMockTimes(HttpClient& client, const ServerAddress& server,
                                       const std::string& api_key);

struct MockSlip {
  double expected_seconds = 0;  // Simulated step time during the run (real seconds).
  double actual_seconds = 0;    // What those steps took.
  double slip_fraction = 0;     // (actual − expected) / expected.
  bool valid = true;            // slip_fraction <= kMaxValidSlip.
};

// The slip between two readings; nullopt when no simulated time passed between them (or a
// worker restarted and its counters went back).
std::optional<MockSlip> SlipBetween(const MockTimes& before, const MockTimes& after);

}  // namespace tandem::bench
