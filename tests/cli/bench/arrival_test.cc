// Arrival processes: seeded, at the asked mean rate, gamma gaps as bursty as their shape says,
// traces replayed at their timestamps (compressed by --speedup).
#include "cli/bench/arrival.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tandem::bench {
namespace {

struct GapStats {
  double mean = 0, cv = 0;
};

GapStats Gaps(const std::vector<double>& t) {
  std::vector<double> gaps;
  for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
  double mean = 0, var = 0;
  for (double g : gaps) mean += g;
  mean /= gaps.size();
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= gaps.size();
  return {mean, std::sqrt(var) / mean};
}

TEST(ArrivalTest, PoissonHasTheMeanRateAndUnitVariation) {
  for (uint64_t seed : {0, 1, 2}) {
    const auto t = GammaArrivals(20000, 50.0, 1.0, seed);
    EXPECT_EQ(t.front(), 0.0);
    const GapStats s = Gaps(t);
    EXPECT_NEAR(s.mean, 1.0 / 50, 0.03 / 50) << "seed " << seed;
    EXPECT_NEAR(s.cv, 1.0, 0.05) << "seed " << seed;
  }
}

TEST(ArrivalTest, GammaShapeSetsBurstinessAtTheSameMeanRate) {
  for (double k : {0.25, 4.0}) {
    const GapStats s = Gaps(GammaArrivals(20000, 10.0, k, 5));
    EXPECT_NEAR(s.mean, 0.1, 0.1 * 0.05) << "k " << k;
    EXPECT_NEAR(s.cv, 1.0 / std::sqrt(k), 0.1 / std::sqrt(k)) << "k " << k;
  }
}

TEST(ArrivalTest, SameSeedSameArrivalsOtherSeedOthers) {
  EXPECT_EQ(GammaArrivals(100, 5, 1, 9), GammaArrivals(100, 5, 1, 9));
  EXPECT_NE(GammaArrivals(100, 5, 1, 9), GammaArrivals(100, 5, 1, 10));
}

TEST(ArrivalTest, InfiniteRateReleasesEverythingAtOnce) {
  for (double t : GammaArrivals(10, INFINITY, 1, 0)) EXPECT_EQ(t, 0.0);
  Dataset d;
  d.requests.resize(4);
  for (double t : ArrivalOffsets(d, ArrivalOptions())) EXPECT_EQ(t, 0.0);
}

TEST(ArrivalTest, TracesFollowTheirTimestampsUnlessARateIsGiven) {
  Dataset d;
  d.has_timestamps = true;
  for (double ts : {0.0, 1.0, 0.5, 4.0}) {
    RequestSpec r;
    r.timestamp_s = ts;
    d.requests.push_back(r);
  }
  ArrivalOptions o;
  o.speedup = 2;
  // An entry earlier than the one before goes right after it.
  EXPECT_EQ(ArrivalOffsets(d, o), (std::vector<double>{0.0, 0.5, 0.5, 2.0}));
  o.request_rate = 1000;
  const auto rated = ArrivalOffsets(d, o);
  EXPECT_LT(rated.back(), 0.1);
}

}  // namespace
}  // namespace tandem::bench
