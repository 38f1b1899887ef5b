// The delivery thread of a worker's streaming calls. Every state change of a streaming call
// (starting a write, finishing the call) runs here, one call at a time, so gRPC reactors and the
// engine thread only flip flags and wake it: neither ever waits on the other.
//
// Thread safety: Wake and WakeAt may be called from any thread (the engine thread, gRPC threads);
// Pump runs on the dispatcher thread only.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace tandem::worker {

// Something the dispatcher runs: a streaming call's state machine.
class Pumped {
 public:
  virtual ~Pumped() = default;
  // Advances the state machine; runs on the dispatcher thread, must not block. May run more
  // often than it was woken (a timer and a wake both firing), so it is idempotent.
  virtual void Pump() = 0;
  // Runs on the dispatcher thread when a timer set with WakeAt fires; Pump by default.
  virtual void OnTimer() { Pump(); }

 private:
  friend class Dispatcher;
  std::atomic<bool> queued_{false};  // Coalesces wakes: at most one queued entry per object.
};

class Dispatcher {
 public:
  Dispatcher();
  // Stops the thread; queued work is dropped.
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Runs target->Pump() soon. Wakes of an object already queued are merged.
  void Wake(std::shared_ptr<Pumped> target);
  // Runs target->OnTimer() at `when` unless target is gone by then (timers hold it weakly).
  void WakeAt(std::chrono::steady_clock::time_point when, std::weak_ptr<Pumped> target);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Pumped>> ready_;
  std::multimap<std::chrono::steady_clock::time_point, std::weak_ptr<Pumped>> timers_;
  bool stop_ = false;
  std::thread thread_;  // Last: starts after the fields it uses.
};

}  // namespace tandem::worker
