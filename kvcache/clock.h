// An injectable clock, so eviction order is testable without sleeps.
//
// Thread safety: implementations are thread-safe.
#pragma once

#include <cstdint>

namespace tandem::kvcache {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowNanos() const = 0;
};

// steady_clock.
Clock& SystemClock();

// A clock that moves only when told to (tests).
class ManualClock final : public Clock {
 public:
  int64_t NowNanos() const override { return now_; }
  void Advance(int64_t nanos) { now_ += nanos; }

 private:
  int64_t now_ = 0;
};

}  // namespace tandem::kvcache
