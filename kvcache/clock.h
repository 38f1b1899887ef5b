// An injectable clock, so eviction order is testable without sleeps.
//
// Thread safety: implementations are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

namespace tandem::kvcache {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowNanos() const = 0;
};

// steady_clock.
Clock& SystemClock();

// A clock that moves only when told to (tests); a test thread may advance it while an engine
// thread reads it.
class ManualClock final : public Clock {
 public:
  int64_t NowNanos() const override { return now_.load(std::memory_order_relaxed); }
  void Advance(int64_t nanos) { now_.fetch_add(nanos, std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> now_{0};
};

}  // namespace tandem::kvcache
