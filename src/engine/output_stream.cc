// The engine contract's small shared pieces: finish reasons and per-request output queues.
#include <string>

#include "tandem/engine.h"

namespace tandem {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "none";
}

void OutputStream::Push(RequestOutput output) {
  // notify_ never changes once set, so calling it outside the lock is safe.
  const std::function<void()>* notify = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(output));
    if (notify_) notify = &notify_;
  }
  cv_.notify_one();
  if (notify != nullptr) (*notify)();
}

void OutputStream::SetNotify(std::function<void()> notify) {
  std::lock_guard<std::mutex> lock(mu_);
  notify_ = std::move(notify);
}

std::optional<RequestOutput> OutputStream::Pop(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_until(lock, deadline, [&] { return !queue_.empty(); })) return std::nullopt;
  RequestOutput out = std::move(queue_.front());
  queue_.pop_front();
  return out;
}

std::optional<RequestOutput> OutputStream::TryPop() {
  return Pop(std::chrono::steady_clock::time_point::min());
}

}  // namespace tandem
