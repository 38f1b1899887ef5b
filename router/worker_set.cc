#include "router/worker_set.h"

#include <algorithm>
#include <charconv>
#include <set>
#include <utility>

namespace tandem::router {

StatusOr<std::vector<std::string>> ParseEndpoints(std::string_view list, std::string_view option) {
  std::vector<std::string> out;
  std::set<std::string_view> seen;
  const std::string opt(option);
  if (list.empty()) return InvalidArgumentError(opt + ": no endpoints given");
  size_t pos = 0;
  while (pos <= list.size()) {
    const size_t comma = std::min(list.find(',', pos), list.size());
    const std::string_view item = list.substr(pos, comma - pos);
    const std::string quoted = "'" + std::string(item) + "'";
    const size_t colon = item.rfind(':');
    if (item.empty()) return InvalidArgumentError(opt + ": empty endpoint in '" +
                                                  std::string(list) + "'");
    if (colon == std::string_view::npos || colon == 0) {
      return InvalidArgumentError(opt + ": expected host:port, got " + quoted);
    }
    const std::string_view port_text = item.substr(colon + 1);
    int port = 0;
    const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(),
                                           port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 ||
        port > 65535) {
      return InvalidArgumentError(opt + ": bad port in " + quoted + " (1..65535)");
    }
    if (!seen.insert(item).second) return InvalidArgumentError(opt + ": duplicate " + quoted);
    out.emplace_back(item);
    pos = comma + 1;
  }
  return out;
}

WorkerId WorkerSet::Add(std::string address) {
  std::lock_guard lock(mu_);
  WorkerState w;
  w.id = WorkerId(workers_.size());
  w.address = std::move(address);
  workers_.push_back(std::move(w));
  return workers_.back().id;
}

WorkerState* WorkerSet::Find(WorkerId id) {
  return id.value() < workers_.size() ? &workers_[id.value()] : nullptr;
}

void WorkerSet::SetUp(WorkerId id, bool up) {
  std::lock_guard lock(mu_);
  WorkerState* w = Find(id);
  if (w == nullptr) return;
  w->up = up;
  if (!up) {
    w->load = LoadReport();
    w->dispatched_since_report = 0;
  }
}

void WorkerSet::UpdateLoad(WorkerId id, const LoadReport& load) {
  std::lock_guard lock(mu_);
  WorkerState* w = Find(id);
  if (w == nullptr) return;
  w->load = load;
  w->dispatched_since_report = 0;
}

std::optional<WorkerId> WorkerSet::SelectWorker(SelectionPolicy& policy) {
  std::lock_guard lock(mu_);
  std::vector<WorkerState> candidates;
  for (const WorkerState& w : workers_) {
    if (w.up) candidates.push_back(w);
  }
  if (candidates.empty()) return std::nullopt;
  const size_t pick = policy.Select(candidates);
  if (pick >= candidates.size()) return std::nullopt;
  WorkerState* w = Find(candidates[pick].id);
  ++w->in_flight;
  ++w->dispatched_since_report;
  return w->id;
}

void WorkerSet::Release(WorkerId id) {
  std::lock_guard lock(mu_);
  WorkerState* w = Find(id);
  if (w != nullptr && w->in_flight > 0) --w->in_flight;
}

std::vector<WorkerState> WorkerSet::Snapshot() const {
  std::lock_guard lock(mu_);
  return workers_;
}

size_t WorkerSet::size() const {
  std::lock_guard lock(mu_);
  return workers_.size();
}

size_t WorkerSet::num_up() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const WorkerState& w : workers_) n += w.up ? 1 : 0;
  return n;
}

std::string WorkerSet::address(WorkerId id) const {
  std::lock_guard lock(mu_);
  return id.value() < workers_.size() ? workers_[id.value()].address : std::string();
}

}  // namespace tandem::router
