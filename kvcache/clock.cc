#include "kvcache/clock.h"

#include <chrono>

namespace tandem::kvcache {
namespace {

class SteadyClock final : public Clock {
 public:
  int64_t NowNanos() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

Clock& SystemClock() {
  // Never destroyed, so pools torn down during static destruction still find it.
  static SteadyClock* const clock = new SteadyClock();
  return *clock;
}

}  // namespace tandem::kvcache
