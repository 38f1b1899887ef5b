#include "worker/dispatcher.h"

#include <utility>
#include <vector>

namespace tandem::worker {

Dispatcher::Dispatcher() : thread_([this] { Loop(); }) {}

Dispatcher::~Dispatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Dispatcher::Wake(std::shared_ptr<Pumped> target) {
  if (target->queued_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_.push_back(std::move(target));
  }
  cv_.notify_one();
}

void Dispatcher::WakeAt(std::chrono::steady_clock::time_point when, std::weak_ptr<Pumped> target) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    timers_.emplace(when, std::move(target));
  }
  cv_.notify_one();
}

void Dispatcher::Loop() {
  std::deque<std::shared_ptr<Pumped>> ready;
  std::vector<std::shared_ptr<Pumped>> due;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (!stop_ && ready_.empty()) {
        if (timers_.empty()) {
          cv_.wait(lock);
        } else if (timers_.begin()->first <= std::chrono::steady_clock::now()) {
          break;
        } else {
          cv_.wait_until(lock, timers_.begin()->first);
        }
      }
      if (stop_) return;
      ready.swap(ready_);
      const auto now = std::chrono::steady_clock::now();
      while (!timers_.empty() && timers_.begin()->first <= now) {
        if (auto target = timers_.begin()->second.lock()) due.push_back(std::move(target));
        timers_.erase(timers_.begin());
      }
    }
    // Cleared before Pump, so a wake that arrives while it runs queues it again.
    for (auto& target : ready) {
      target->queued_.store(false);
      target->Pump();
    }
    for (auto& target : due) target->OnTimer();
    ready.clear();
    due.clear();
  }
}

}  // namespace tandem::worker
