// Conditional disaggregation (issue 17): where the frontend has a prompt prefilled.
#include <gtest/gtest.h>

#include "frontend/request_runner.h"

namespace tandem::frontend {
namespace {

TEST(PrefillDecisionTest, OnlyALongUncachedPartGoesToAPrefillWorker) {
  const DisaggregationOptions options;  // 512 tokens, no queue limit.
  PrefillDecision r{
      .prompt_tokens = 4000, .decode_cached_tokens = 0, .prefill_workers_up = 2, .max_tokens = 100};
  EXPECT_EQ(ChoosePrefillPlace(options, r), PrefillPlace::kRemote);
  // What the decode worker caches counts: 3,600 of 4,000 cached leaves 400 to compute there.
  r.decode_cached_tokens = 3600;
  EXPECT_EQ(ChoosePrefillPlace(options, r), PrefillPlace::kLocal);
  r.decode_cached_tokens = 3488;  // 512 left: remote.
  EXPECT_EQ(ChoosePrefillPlace(options, r), PrefillPlace::kRemote);
  // No prefill worker up, or a request that wants only the first token: local.
  r.decode_cached_tokens = 0;
  r.prefill_workers_up = 0;
  EXPECT_EQ(ChoosePrefillPlace(options, r), PrefillPlace::kLocal);
  r.prefill_workers_up = 1;
  r.max_tokens = 1;
  EXPECT_EQ(ChoosePrefillPlace(options, r), PrefillPlace::kLocal);
  // A threshold of 0 sends every prompt to a prefill worker.
  r.max_tokens = 2;
  r.prompt_tokens = 1;
  EXPECT_EQ(ChoosePrefillPlace({.local_prefill_tokens = 0}, r), PrefillPlace::kRemote);
}

TEST(PrefillDecisionTest, APrefillWorkerWithTooMuchQueuedIsPassedOver) {
  const DisaggregationOptions options{.local_prefill_tokens = 512,
                                      .max_prefill_queue_tokens = 8192};
  EXPECT_TRUE(PrefillQueueAdmits(options, 0));
  EXPECT_TRUE(PrefillQueueAdmits(options, 8192));
  EXPECT_FALSE(PrefillQueueAdmits(options, 8193));
  EXPECT_TRUE(PrefillQueueAdmits({.max_prefill_queue_tokens = 0}, 1 << 30)) << "0: no limit";
}

}  // namespace
}  // namespace tandem::frontend
