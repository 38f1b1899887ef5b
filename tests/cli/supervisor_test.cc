// Issue 14 item 1: serve supervises its daemons. Stand-in daemons (/bin/sh scripts) that exit,
// fail again and again, or stop slowly drive the Supervisor that `tandem serve` runs.
#include "cli/supervisor.h"

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace tandem::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

RestartPolicy FastPolicy(int max_restarts) {
  RestartPolicy p;
  p.max_restarts = max_restarts;
  p.first_backoff = milliseconds(20);
  p.max_backoff = milliseconds(80);
  return p;
}

DaemonSpec Shell(std::string name, DaemonSpec::Role role, std::string script) {
  DaemonSpec spec;
  spec.name = std::move(name);
  spec.role = role;
  spec.argv = [script] { return std::vector<std::string>{"/bin/sh", "-c", script}; };
  return spec;
}

// A daemon that runs until SIGTERM and then exits 0, as the real ones do.
constexpr char kServing[] = "trap 'exit 0' TERM; while :; do sleep 0.05; done";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tandem_supervisor_test_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Ticks until `done` or the deadline; the Tick status of the last call.
  template <typename Done>
  Status TickUntil(Supervisor& s, Done done, milliseconds timeout = milliseconds(10000)) {
    const auto deadline = Clock::now() + timeout;
    Status last = OkStatus();
    while (!done() && Clock::now() < deadline) {
      last = s.Tick();
      if (!last.ok()) return last;
      signals_.Wait(milliseconds(10));
    }
    return last;
  }

  BlockedSignals signals_;
  fs::path dir_;
};

TEST_F(SupervisorTest, ADaemonThatExitsIsRestartedWhileTheOthersRun) {
  Supervisor s(FastPolicy(5), signals_);
  const fs::path starts = dir_ / "starts";
  // Each start appends its log name and pid; the worker lives until killed.
  ASSERT_TRUE(s.Add(Shell("worker-0", DaemonSpec::Role::kWorker,
                          "echo \"$TANDEM_LOG_NAME $$\" >> " + starts.string() + "; " + kServing))
                  .ok());
  ASSERT_TRUE(s.Add(Shell("frontend", DaemonSpec::Role::kFrontend, kServing)).ok());
  auto lines = [&] {
    const std::string text = ReadFile(starts);
    return std::count(text.begin(), text.end(), '\n');
  };
  ASSERT_TRUE(TickUntil(s, [&] { return lines() == 1; }).ok());
  const std::string first = ReadFile(starts);
  ASSERT_TRUE(first.starts_with("worker-0 "));
  const pid_t pid = std::stoi(first.substr(9));
  kill(pid, SIGKILL);
  ASSERT_TRUE(TickUntil(s, [&] { return lines() == 2; }).ok()) << ReadFile(starts);
  const std::string second = ReadFile(starts).substr(first.size());
  EXPECT_TRUE(second.starts_with("worker-0 "));
  EXPECT_NE(std::stoi(second.substr(9)), pid);
  EXPECT_TRUE(s.Stop(seconds(5)));
}

TEST_F(SupervisorTest, ADaemonThatKeepsFailingIsGivenUp) {
  Supervisor s(FastPolicy(3), signals_);
  const fs::path starts = dir_ / "starts";
  ASSERT_TRUE(s.Add(Shell("worker-0", DaemonSpec::Role::kWorker,
                          "echo x >> " + starts.string() + "; exit 3"))
                  .ok());
  ASSERT_TRUE(s.Add(Shell("worker-1", DaemonSpec::Role::kWorker, kServing)).ok());
  ASSERT_TRUE(s.Add(Shell("frontend", DaemonSpec::Role::kFrontend, kServing)).ok());
  // worker-1 still serves: serve goes on once worker-0 is given up after 1 + 3 starts.
  ASSERT_TRUE(TickUntil(s, [&] { return ReadFile(starts).size() == 8; }).ok());
  const auto settle = Clock::now() + milliseconds(500);
  ASSERT_TRUE(TickUntil(s, [&] { return Clock::now() >= settle; }).ok());
  EXPECT_EQ(ReadFile(starts), "x\nx\nx\nx\n");
  EXPECT_TRUE(s.Stop(seconds(5)));
}

TEST_F(SupervisorTest, ServeCannotGoOnWhenEveryWorkerIsGivenUp) {
  Supervisor s(FastPolicy(2), signals_);
  ASSERT_TRUE(s.Add(Shell("worker-0", DaemonSpec::Role::kWorker, "exit 1")).ok());
  ASSERT_TRUE(s.Add(Shell("frontend", DaemonSpec::Role::kFrontend, kServing)).ok());
  const Status status = TickUntil(s, [] { return false; });
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("every worker kept failing"), std::string::npos) << status;
  s.Stop(seconds(5));
}

TEST_F(SupervisorTest, StopEndsTheFrontendBeforeTheWorkersAndReportsUncleanExits) {
  Supervisor s(FastPolicy(5), signals_);
  const fs::path order = dir_ / "order";
  // The frontend takes 300 ms to drain; the worker must still run meanwhile.
  ASSERT_TRUE(s.Add(Shell("worker-0", DaemonSpec::Role::kWorker,
                          "trap 'echo worker >> " + order.string() +
                              "; exit 0' TERM; while :; do sleep 0.05; done"))
                  .ok());
  ASSERT_TRUE(s.Add(Shell("frontend", DaemonSpec::Role::kFrontend,
                          "trap 'sleep 0.3; echo frontend >> " + order.string() +
                              "; exit 1' TERM; while :; do sleep 0.05; done"))
                  .ok());
  // Let both install their traps.
  const auto ready = Clock::now() + milliseconds(300);
  ASSERT_TRUE(TickUntil(s, [&] { return Clock::now() >= ready; }).ok());
  EXPECT_FALSE(s.Stop(seconds(5)));  // The frontend exited 1: requests were cut.
  EXPECT_EQ(ReadFile(order), "frontend\nworker\n");
}

TEST_F(SupervisorTest, WhatOutlivesTheStopDeadlineIsKilled) {
  Supervisor s(FastPolicy(5), signals_);
  ASSERT_TRUE(s.Add(Shell("worker-0", DaemonSpec::Role::kWorker, kServing)).ok());
  ASSERT_TRUE(s.Add(Shell("frontend", DaemonSpec::Role::kFrontend,
                          "trap '' TERM; while :; do sleep 0.05; done"))
                  .ok());
  const auto ready = Clock::now() + milliseconds(200);
  ASSERT_TRUE(TickUntil(s, [&] { return Clock::now() >= ready; }).ok());
  const auto start = Clock::now();
  EXPECT_FALSE(s.Stop(milliseconds(300)));
  EXPECT_LT(Clock::now() - start, seconds(3));
}

}  // namespace
}  // namespace tandem::cli
