#include "cli/supervisor.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/logging.h"

namespace tandem::cli {

using Clock = std::chrono::steady_clock;

Status Supervisor::StartSlot(Slot& slot) {
  std::vector<std::pair<std::string, std::string>> env = slot.spec.env;
  env.emplace_back("TANDEM_LOG_NAME", slot.spec.name);
  StatusOr<std::unique_ptr<Child>> child =
      Child::Start(slot.spec.name, slot.spec.argv(), env, signals_.previous());
  if (!child.ok()) return child.status();
  slot.child = std::move(child).value();
  slot.started = Clock::now();
  return OkStatus();
}

Status Supervisor::Add(DaemonSpec spec) {
  Slot slot;
  slot.spec = std::move(spec);
  slots_.push_back(std::move(slot));
  return StartSlot(slots_.back());
}

const Child* Supervisor::FindExited() {
  for (Slot& slot : slots_) {
    if (slot.child != nullptr && slot.child->Poll()) return slot.child.get();
  }
  return nullptr;
}

void Supervisor::OnExit(Slot& slot, Clock::time_point now) {
  const double ran_s = std::chrono::duration<double>(now - slot.started).count();
  if (now - slot.started >= policy_.stable_after) slot.restarts_in_a_row = 0;
  const std::string status = slot.child->DescribeExit();
  const int pid = slot.child->pid();
  slot.child.reset();
  if (slot.restarts_in_a_row >= policy_.max_restarts) {
    slot.given_up = true;
    spdlog::error("daemon exited, giving up name={} pid={} status={} ran_s={:.1f} restarts={}",
                  slot.spec.name, pid, Quoted(status), ran_s, slot.restarts_in_a_row);
    return;
  }
  auto backoff = policy_.first_backoff * (int64_t{1} << std::min(slot.restarts_in_a_row, 16));
  backoff = std::min(backoff, policy_.max_backoff);
  slot.restart_at = now + backoff;
  spdlog::error(
      "daemon exited, restarting name={} pid={} status={} ran_s={:.1f} in_s={:.1f} "
      "attempt={} max_restarts={}",
      slot.spec.name, pid, Quoted(status), ran_s, std::chrono::duration<double>(backoff).count(),
      slot.restarts_in_a_row + 1, policy_.max_restarts);
}

Status Supervisor::Tick() {
  const auto now = Clock::now();
  for (Slot& slot : slots_) {
    if (slot.child != nullptr && slot.child->Poll()) OnExit(slot, now);
    if (slot.child != nullptr || slot.given_up || now < slot.restart_at) continue;
    ++slot.restarts_in_a_row;
    if (Status s = StartSlot(slot); !s.ok()) {
      spdlog::error("daemon restart failed name={} error={}", slot.spec.name, Quoted(s.ToString()));
      slot.started = now;
      slot.child.reset();
      if (slot.restarts_in_a_row >= policy_.max_restarts) {
        slot.given_up = true;
      } else {
        slot.restart_at = now + policy_.max_backoff;
      }
      continue;
    }
    spdlog::warn("daemon restarted name={} pid={} attempt={}", slot.spec.name, slot.child->pid(),
                 slot.restarts_in_a_row);
  }
  bool any_worker = false;
  bool frontend_given_up = false;
  for (const Slot& slot : slots_) {
    if (slot.spec.role == DaemonSpec::Role::kFrontend) frontend_given_up |= slot.given_up;
    if (slot.spec.role == DaemonSpec::Role::kWorker) any_worker |= !slot.given_up;
  }
  if (frontend_given_up) {
    return UnavailableError("the frontend kept failing; nothing can serve (its log is above)");
  }
  if (!any_worker) {
    return UnavailableError("every worker kept failing; nothing can serve (their logs are above)");
  }
  return OkStatus();
}

bool Supervisor::Stop(std::chrono::duration<double> timeout) {
  bool clean = true;
  bool kill_now = false;
  for (const DaemonSpec::Role role : {DaemonSpec::Role::kFrontend, DaemonSpec::Role::kWorker}) {
    std::vector<Child*> running;
    for (Slot& slot : slots_) {
      if (slot.spec.role != role || slot.child == nullptr) continue;
      if (!slot.child->Poll()) {
        slot.child->Signal(kill_now ? SIGKILL : SIGTERM);
        running.push_back(slot.child.get());
      }
    }
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout);
    for (Child* c : running) {
      while (!c->Poll()) {
        if (Clock::now() >= deadline) {
          spdlog::error("daemon did not stop in time, killing name={} pid={}", c->name(), c->pid());
          c->Signal(SIGKILL);
          while (!c->Poll()) signals_.Wait(std::chrono::milliseconds(50));
          break;
        }
        // SIGCHLD wakes this.
        if (IsStopSignal(signals_.Wait(std::chrono::milliseconds(50))) && !kill_now) {
          spdlog::warn("second signal, killing the daemons now");
          kill_now = true;
          for (Slot& slot : slots_) {
            if (slot.child != nullptr) slot.child->Signal(SIGKILL);
          }
        }
      }
      if (!c->clean_exit()) {
        spdlog::warn("daemon stopped uncleanly name={} pid={} status={}", c->name(), c->pid(),
                     Quoted(c->DescribeExit()));
        clean = false;
      }
    }
  }
  return clean && !kill_now;
}

}  // namespace tandem::cli
