// The KV-aware router (issue 16) with real daemons on 127.0.0.1: tandem-frontend over
// tandem-decode-worker daemons (random weights, the Qwen2 tokenizer from ../shared/data).
//   - requests that share a prefix land on the worker that caches it and report cached tokens;
//   - two frontends, each with its own index from the same event streams, spread a burst of
//     requests for one cached prefix instead of piling them onto its worker;
//   - workers added to and removed from a --workers-file while serving;
//   - a frontend that falls behind a worker whose event ring overflowed rebuilds its index from
//     the worker's snapshot, and routes by it.
#include <signal.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "daemon_process.h"
#include "frontend_util.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kBlock = 16;

// A prompt of `blocks` full blocks plus a few tokens, the same for the same `seed`.
std::vector<int> Prompt(int seed, int blocks, int tail_seed = 0) {
  std::vector<int> p;
  for (int i = 0; i < blocks * kBlock; ++i) p.push_back(100 + (seed * 7919 + i * 31) % 5000);
  for (int i = 0; i < 3; ++i) p.push_back(200 + (tail_seed * 13 + i) % 5000);
  return p;
}

Json Completion(const std::vector<int>& prompt, int max_tokens = 2) {
  return Json{{"model", kTestModelName},
              {"prompt", prompt},
              {"max_tokens", max_tokens},
              {"ignore_eos", true}};
}

// The prompt tokens the worker served from its cache, or -1 when the request failed.
int CachedTokens(int port, const std::vector<int>& prompt, int max_tokens = 2) {
  HttpClient c(port);
  const HttpResult r = c.Post("/v1/completions", Completion(prompt, max_tokens));
  EXPECT_EQ(r.status, 200) << r.body;
  if (r.status != 200) return -1;
  return Json::parse(r.body)["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
}

// Requests a worker has finished (stopped or at their length).
int WorkerRequests(const DaemonProcess& worker) {
  return static_cast<int>(
      Metric(worker.metrics_port(), "tandem_worker_requests_total{status=\"stop\"}") +
      Metric(worker.metrics_port(), "tandem_worker_requests_total{status=\"length\"}"));
}

class KvRoutingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new fs::path(fs::temp_directory_path() /
                              ("tandem_kv_routing_test_" + std::to_string(getpid())));
    if (!WriteTestModel(*model_dir_)) return;
    for (int i = 0; i < kWorkers; ++i) {
      // A small ring, so that a subscriber that falls behind needs a snapshot.
      auto w =
          DaemonProcess::Start(WorkerBinary(), {"--model", model_dir_->string(), "--weights",
                                                "random", "--kv-cache-size", "32MiB", "--port", "0",
                                                "--metrics-port", "0", "--kv-event-capacity", "8"});
      ASSERT_TRUE(w.ok()) << w.status();
      workers_[i] = std::move(w).value().release();
    }
  }

  static void TearDownTestSuite() {
    for (DaemonProcess* w : workers_) delete w;  // Stops it.
    std::fill(std::begin(workers_), std::end(workers_), nullptr);
    if (model_dir_ == nullptr) return;
    fs::remove_all(*model_dir_);
    delete std::exchange(model_dir_, nullptr);
  }

  void SetUp() override {
    if (workers_[0] == nullptr) GTEST_SKIP() << "../shared/data absent: no Qwen2 tokenizer";
  }

  static std::string Workers(std::initializer_list<int> which) {
    std::string list;
    for (int i : which) list += (list.empty() ? "" : ",") + workers_[i]->grpc_address();
    return list;
  }

  // A frontend routing by KV overlap; waits until `up` workers are up.
  static std::unique_ptr<DaemonProcess> StartFrontend(std::vector<std::string> args, int up) {
    std::vector<std::string> all = {"--model",
                                    model_dir_->string(),
                                    "--served-model-name",
                                    kTestModelName,
                                    "--port",
                                    "0",
                                    "--grpc-port",
                                    "0",
                                    "--router-mode",
                                    "kv"};
    all.insert(all.end(), args.begin(), args.end());
    auto f = DaemonProcess::Start(FrontendBinary(), all);
    EXPECT_TRUE(f.ok()) << f.status();
    if (!f.ok()) return nullptr;
    EXPECT_TRUE(WaitForWorkersUp((*f)->metrics_port(), up)) << (*f)->log();
    return std::move(f).value();
  }

  // Waits until the frontend's index holds at least `blocks` blocks and it has applied every
  // event its workers reported (a report comes every 100 ms; the events of a request that
  // returned were made before it returned).
  static bool WaitIndexed(int port, double blocks) {
    std::this_thread::sleep_for(milliseconds(250));
    return WaitFor(
        [&] {
          return Metric(port, "tandem_frontend_router_indexed_blocks") >= blocks &&
                 Metric(port, "tandem_frontend_router_kv_event_lag") == 0;
        },
        seconds(10));
  }

  static constexpr int kWorkers = 3;
  static inline fs::path* model_dir_ = nullptr;
  static inline DaemonProcess* workers_[kWorkers] = {};
};

TEST_F(KvRoutingTest, RequestsSharingAPrefixLandWhereItIsCached) {
  auto frontend = StartFrontend({"--workers", Workers({0, 1, 2})}, 3);
  ASSERT_NE(frontend, nullptr);
  const int port = frontend->metrics_port();
  // Six conversations of 4 blocks each, spread over the workers by load (nothing cached yet).
  constexpr int kConversations = 6;
  for (int c = 0; c < kConversations; ++c) EXPECT_EQ(CachedTokens(port, Prompt(c, 4)), 0);
  ASSERT_TRUE(WaitIndexed(port, kConversations * 4)) << frontend->log();
  // Each one again, with a new tail: every time on the worker that holds its 4 blocks.
  for (int round = 1; round <= 3; ++round) {
    for (int c = 0; c < kConversations; ++c) {
      EXPECT_EQ(CachedTokens(port, Prompt(c, 4, round)), 4 * kBlock)
          << "conversation " << c << " round " << round;
    }
  }
  EXPECT_EQ(Metric(port, "tandem_frontend_router_decisions_total{mode=\"kv\"}"),
            kConversations * 4);
  // The histogram saw the hits: 18 decisions with 4 cached blocks (bucket le=4 minus le=2).
  EXPECT_EQ(Metric(port, "tandem_frontend_router_overlap_blocks_bucket{le=\"4\"}") -
                Metric(port, "tandem_frontend_router_overlap_blocks_bucket{le=\"2\"}"),
            3 * kConversations);
  EXPECT_EQ(Metric(port, "tandem_frontend_router_kv_resubscriptions_total"), 0);
  EXPECT_GE(Metric(port, "tandem_frontend_router_kv_event_lag"), 0);
}

TEST_F(KvRoutingTest, TwoFrontendsDoNotPileABurstOntoOneWorker) {
  // Each frontend keeps its own index and its own prediction of load between reports; both see
  // the same reports. A burst of new conversations through both at once must spread over the
  // workers, not land wherever both frontends last saw the least load.
  auto a = StartFrontend({"--workers", Workers({0, 1}), "--router-seed", "1"}, 2);
  auto b = StartFrontend({"--workers", Workers({0, 1}), "--router-seed", "2"}, 2);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const int before[2] = {WorkerRequests(*workers_[0]), WorkerRequests(*workers_[1])};
  constexpr int kPerFrontend = 8;
  std::vector<std::future<int>> done;
  for (int i = 0; i < kPerFrontend; ++i) {
    for (int f = 0; f < 2; ++f) {
      const int port = (f == 0 ? a : b)->metrics_port();
      done.push_back(std::async(std::launch::async, [port, i, f] {
        return CachedTokens(port, Prompt(1000 + 100 * f + i, 4), 96);
      }));
    }
  }
  for (auto& d : done) EXPECT_EQ(d.get(), 0);
  const int got[2] = {WorkerRequests(*workers_[0]) - before[0],
                      WorkerRequests(*workers_[1]) - before[1]};
  ASSERT_EQ(got[0] + got[1], 2 * kPerFrontend);
  EXPECT_GE(std::min(got[0], got[1]), 2 * kPerFrontend * 3 / 8) << got[0] << " / " << got[1];
  // Afterwards both frontends know where every conversation lives: either sends the next turn
  // of one that came through the other to the worker that caches it.
  ASSERT_TRUE(WaitIndexed(a->metrics_port(), 2 * kPerFrontend * 4));
  ASSERT_TRUE(WaitIndexed(b->metrics_port(), 2 * kPerFrontend * 4));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(CachedTokens(a->metrics_port(), Prompt(1100 + i, 4, 1)), 4 * kBlock);
    EXPECT_EQ(CachedTokens(b->metrics_port(), Prompt(1000 + i, 4, 1)), 4 * kBlock);
  }
}

TEST_F(KvRoutingTest, WorkersJoinAndLeaveThroughTheWorkersFile) {
  const fs::path list = *model_dir_ / "workers.txt";
  auto write = [&](const std::string& text) {
    std::ofstream(list.string() + ".tmp") << text;
    fs::rename(list.string() + ".tmp", list);
  };
  write("# the cluster\n" + workers_[0]->grpc_address() + "\n");
  auto frontend = StartFrontend({"--workers-file", list.string()}, 1);
  ASSERT_NE(frontend, nullptr);
  const int port = frontend->metrics_port();
  auto up = [&] { return Json::parse(*HttpGet(port, "/health"))["workers_up"].get<int>(); };
  int before[2] = {WorkerRequests(*workers_[0]), WorkerRequests(*workers_[1])};
  for (int i = 0; i < 4; ++i) ASSERT_GE(CachedTokens(port, Prompt(200 + i, 1)), 0);
  EXPECT_EQ(WorkerRequests(*workers_[0]) - before[0], 4);
  EXPECT_EQ(WorkerRequests(*workers_[1]) - before[1], 0);

  // Joining: the new worker takes a share of new conversations.
  write(workers_[0]->grpc_address() + "\n" + workers_[1]->grpc_address() + "\n");
  ASSERT_TRUE(WaitFor([&] { return up() == 2; }, seconds(10))) << frontend->log();
  before[1] = WorkerRequests(*workers_[1]);
  {
    // At once, so that each one routed counts as load on its worker for the next.
    std::vector<std::future<int>> done;
    for (int i = 0; i < 6; ++i) {
      done.push_back(std::async(std::launch::async,
                                [port, i] { return CachedTokens(port, Prompt(300 + i, 1), 32); }));
    }
    for (auto& d : done) EXPECT_GE(d.get(), 0);
  }
  EXPECT_GE(WorkerRequests(*workers_[1]) - before[1], 2);

  // Leaving while a request may run there: it finishes; nothing new goes there.
  before[0] = WorkerRequests(*workers_[0]);
  before[1] = WorkerRequests(*workers_[1]);
  Json long_request = ChatRequest(200, /*stream=*/true);
  long_request["ignore_eos"] = true;
  OpenStream running(port, long_request);
  ASSERT_TRUE(running.WaitStarted());
  write(workers_[1]->grpc_address() + "\n");
  ASSERT_TRUE(WaitFor([&] { return up() == 1; }, seconds(10))) << frontend->log();
  for (int i = 0; i < 4; ++i) ASSERT_GE(CachedTokens(port, Prompt(500 + i, 1)), 0);
  const std::string rest = running.Finish();
  EXPECT_NE(rest.find("[DONE]"), std::string::npos);
  EXPECT_EQ(rest.find("\"error\""), std::string::npos) << rest;
  const int got[2] = {WorkerRequests(*workers_[0]) - before[0],
                      WorkerRequests(*workers_[1]) - before[1]};
  EXPECT_EQ(got[0] + got[1], 4 + 1);  // And the stream, on whichever worker it ran.
  EXPECT_LE(got[0], 1);
  EXPECT_NE(frontend->log().find("worker removed"), std::string::npos);
}

TEST_F(KvRoutingTest, IndexesAreRebuiltFromSnapshotsWhenEventsWereMissed) {
  // Worker 2 serves conversations no frontend hears of, making more events than its ring of 8
  // keeps.
  auto stub = v1::Worker::NewStub(workers_[2]->channel());
  constexpr int kConversations = 10;
  for (int c = 0; c < kConversations; ++c) {
    v1::GenerateRequest req;
    req.set_request_id("direct-" + std::to_string(c));
    for (int t : Prompt(600 + c, 3)) req.add_prompt_tokens(t);
    req.mutable_sampling()->set_max_tokens(1);
    grpc::ClientContext ctx;
    auto reader = stub->Generate(&ctx, req);
    v1::GenerateResponse r;
    while (reader->Read(&r)) {
    }
    ASSERT_TRUE(reader->Finish().ok());
  }
  // A frontend subscribing from the first event, long gone from the ring, gets the snapshot.
  auto frontend = StartFrontend({"--workers", Workers({1, 2}), "--worker-stall-timeout", "1"}, 2);
  ASSERT_NE(frontend, nullptr);
  const int port = frontend->metrics_port();
  ASSERT_TRUE(WaitIndexed(port, kConversations * 3)) << frontend->log();
  EXPECT_GE(Metric(port, "tandem_frontend_router_kv_snapshots_total"), 1);
  for (int c = 0; c < 3; ++c) EXPECT_EQ(CachedTokens(port, Prompt(600 + c, 3, 1)), 3 * kBlock);

  // Worker 2 stops answering: it leaves routing and the index forgets its blocks; requests for
  // its conversations go to worker 1 meanwhile.
  workers_[2]->Signal(SIGSTOP);
  ASSERT_TRUE(WaitFor([&] { return Json::parse(*HttpGet(port, "/health"))["workers_up"] == 1; },
                      seconds(10)))
      << frontend->log();
  EXPECT_EQ(CachedTokens(port, Prompt(600 + 3, 3, 2)), 0);
  const double snapshots = Metric(port, "tandem_frontend_router_kv_snapshots_total");
  // Back: the frontend subscribes from the start again and rebuilds worker 2's entries.
  workers_[2]->Signal(SIGCONT);
  ASSERT_TRUE(WaitFor(
      [&] {
        return Json::parse(*HttpGet(port, "/health"))["workers_up"] == 2 &&
               Metric(port, "tandem_frontend_router_kv_snapshots_total") > snapshots;
      },
      seconds(20)))
      << frontend->log();
  for (int c = 4; c < kConversations; ++c) {
    EXPECT_EQ(CachedTokens(port, Prompt(600 + c, 3, 3)), 3 * kBlock) << c;
  }
}

}  // namespace
}  // namespace tandem::testing
