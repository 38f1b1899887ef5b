#include "router/selection_policy.h"

#include <algorithm>
#include <optional>
#include <tuple>

namespace tandem::router {

int WorkerState::PredictedRequests() const {
  return std::max(load.active_requests + load.waiting_requests + dispatched_since_report,
                  in_flight);
}

namespace {

// The index of the first candidate whose id comes after `last` (wrapping), so the rotation
// stays fair when workers come and go between calls.
size_t NextAfter(std::span<const WorkerState> candidates, std::optional<WorkerId> last) {
  if (!last) return 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i].id > *last) return i;
  }
  return 0;
}

class RoundRobinPolicy final : public SelectionPolicy {
 public:
  std::string_view name() const override { return "round-robin"; }
  size_t Select(std::span<const WorkerState> candidates) override {
    const size_t i = NextAfter(candidates, last_);
    last_ = candidates[i].id;
    return i;
  }

 private:
  std::optional<WorkerId> last_;
};

class LeastLoadedPolicy final : public SelectionPolicy {
 public:
  std::string_view name() const override { return "least-loaded"; }
  size_t Select(std::span<const WorkerState> candidates) override {
    // Scan in rotation order starting after the last pick, keeping the first minimum: equal
    // workers then take turns.
    const size_t start = NextAfter(candidates, last_);
    size_t best = start;
    auto key = [&](size_t i) {
      return std::make_tuple(candidates[i].PredictedRequests(), candidates[i].load.active_blocks);
    };
    for (size_t k = 1; k < candidates.size(); ++k) {
      const size_t i = (start + k) % candidates.size();
      if (key(i) < key(best)) best = i;
    }
    last_ = candidates[best].id;
    return best;
  }

 private:
  std::optional<WorkerId> last_;
};

}  // namespace

StatusOr<std::unique_ptr<SelectionPolicy>> CreatePolicy(std::string_view name) {
  if (name == "round-robin") return std::unique_ptr<SelectionPolicy>(new RoundRobinPolicy());
  if (name == "least-loaded") return std::unique_ptr<SelectionPolicy>(new LeastLoadedPolicy());
  return InvalidArgumentError("router mode: unknown '" + std::string(name) +
                              "' (round-robin, least-loaded)");
}

}  // namespace tandem::router
