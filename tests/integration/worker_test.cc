// tandem-decode-worker as a client sees it: the real binary on 127.0.0.1 with ephemeral ports
// (issue 4: streaming, errors, cancellation freeing blocks, SIGTERM drain, metrics).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "../worker/kv_subscription.h"
#include "daemon_process.h"
#include "tandem/block_hash.h"
#include "tandem/transfer.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kWorker = std::string(TANDEM_BINARY_DIR) + "/bin/tandem-decode-worker";
const std::string kGoldenDir = std::string(TANDEM_SOURCE_DIR) + "/tests/data/golden/llama_gqa_f32";

const std::string kPrefillWorker = std::string(TANDEM_BINARY_DIR) + "/bin/tandem-prefill-worker";

std::unique_ptr<DaemonProcess> StartWorker(std::vector<std::string> args,
                                           const std::string& binary = kWorker) {
  args.insert(args.end(), {"--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"});
  auto daemon = DaemonProcess::Start(binary, std::move(args));
  EXPECT_TRUE(daemon.ok()) << daemon.status();
  return daemon.ok() ? std::move(daemon).value() : nullptr;
}

v1::GenerateRequest Greedy(std::vector<int32_t> prompt, int max_tokens,
                           const std::string& request_id = "") {
  v1::GenerateRequest request;
  request.set_request_id(request_id);
  request.mutable_prompt_tokens()->Add(prompt.begin(), prompt.end());
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_sampling()->set_max_tokens(max_tokens);
  request.mutable_sampling()->set_ignore_eos(true);
  return request;
}

struct Streamed {
  grpc::Status status;
  std::vector<int32_t> tokens;
  int messages = 0;
  bool finished = false;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  std::optional<v1::KvHandle> kv_handle;  // On the last message of a prefill_only request.
};

// Reads a whole Generate stream. `on_message` runs after each message (may be empty).
Streamed Generate(v1::Worker::Stub& stub, const v1::GenerateRequest& request,
                  grpc::ClientContext* ctx = nullptr,
                  const std::function<void(const Streamed&)>& on_message = {}) {
  grpc::ClientContext local;
  if (ctx == nullptr) ctx = &local;
  ctx->set_deadline(std::chrono::system_clock::now() + seconds(120));
  Streamed out;
  auto reader = stub.Generate(ctx, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    ++out.messages;
    EXPECT_FALSE(out.finished) << "message after the final one";
    for (const auto& t : response.tokens()) out.tokens.push_back(t.token());
    if (response.finished()) {
      out.finished = true;
      out.finish_reason = response.finish_reason();
      if (response.has_kv_handle()) out.kv_handle = response.kv_handle();
    }
    if (on_message) on_message(out);
  }
  out.status = reader->Finish();
  return out;
}

// Reads load reports until `done` accepts one or the timeout passes; true when accepted.
bool WaitForLoad(v1::Worker::Stub& stub, const std::function<bool(const v1::LoadReport&)>& done,
                 milliseconds timeout = seconds(30)) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  v1::StreamLoadRequest request;
  request.set_interval_ms(10);
  auto reader = stub.StreamLoad(&ctx, request);
  v1::LoadReport report;
  bool accepted = false;
  while (!accepted && reader->Read(&report)) accepted = done(report);
  ctx.TryCancel();
  reader->Finish().IgnoreError();
  return accepted;
}

// The value of one sample line of the Prometheus text (`name{labels} value`), or -1.
double MetricValue(const std::string& text, const std::string& sample) {
  const size_t at = text.find("\n" + sample + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + sample.size() + 2));
}

// Waits for a load report whose newest KV event id is `id`.
bool WaitForKvLastId(v1::Worker::Stub& stub, uint64_t id) {
  return WaitForLoad(
      stub, [id](const v1::LoadReport& r) { return r.kv_events_last_id() == id; }, seconds(5));
}

v1::WorkerInfo GetInfo(v1::Worker::Stub& stub) {
  grpc::ClientContext ctx;
  v1::WorkerInfo info;
  EXPECT_TRUE(stub.GetInfo(&ctx, v1::GetInfoRequest(), &info).ok());
  return info;
}

std::vector<int32_t> Tokens(int n, int first) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < n; ++i) tokens.push_back((first + i * 7) % 500 + 1);
  return tokens;
}

// Every hash a snapshot's parts list, sorted; and checks that each part is as of `as_of`.
std::vector<uint64_t> SnapshotHashes(const std::vector<v1::KvSnapshotPart>& parts, uint64_t as_of) {
  std::vector<uint64_t> hashes;
  for (const auto& p : parts) {
    EXPECT_EQ(p.as_of_event_id(), as_of);
    EXPECT_EQ(p.tier(), v1::KV_TIER_DEVICE);
    hashes.insert(hashes.end(), p.block_hashes().begin(), p.block_hashes().end());
  }
  std::sort(hashes.begin(), hashes.end());
  return hashes;
}

std::vector<uint64_t> Sorted(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(WorkerTest, GreedyStreamMatchesGoldenTokens) {
  auto worker = StartWorker({"--model", kGoldenDir});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());
  std::ifstream in(kGoldenDir + "/golden.json");
  const nlohmann::json golden = nlohmann::json::parse(in);
  ASSERT_FALSE(golden["greedy"].empty());
  for (const auto& g : golden["greedy"]) {
    const auto expected = g["tokens"].get<std::vector<int32_t>>();
    const Streamed out = Generate(
        *stub, Greedy(g["prompt"].get<std::vector<int32_t>>(), static_cast<int>(expected.size())));
    ASSERT_TRUE(out.status.ok()) << out.status.error_message();
    EXPECT_TRUE(out.finished);
    EXPECT_EQ(out.finish_reason, v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(out.tokens, expected);
  }
}

TEST(WorkerTest, GetInfoDescribesTheWorker) {
  auto worker = StartWorker({"--num-blocks", "64", "--worker-id", "w7"});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());
  grpc::ClientContext ctx;
  v1::WorkerInfo info;
  ASSERT_TRUE(stub->GetInfo(&ctx, v1::GetInfoRequest(), &info).ok());
  EXPECT_EQ(info.worker_id(), "w7");
  EXPECT_EQ(info.role(), v1::WORKER_ROLE_AGGREGATED);
  EXPECT_EQ(info.model(), "builtin:demo");
  EXPECT_EQ(info.block_size(), 16);
  EXPECT_EQ(info.vocab_size(), 512);
  EXPECT_EQ(info.max_model_len(), 2048);
  EXPECT_EQ(info.total_blocks(), 64);
  // Issue 16: the identity of what it computes (configuration and seeded weights, no path), and
  // the block hash seed derived from it.
  EXPECT_NE(info.model_identity().find("weights:random:0"), std::string::npos)
      << info.model_identity();
  EXPECT_EQ(info.block_hash_seed(), BlockHashSeed(info.model_identity()));
  // The demo model's KV layout, fp32 on the CPU backend.
  EXPECT_EQ(info.kv_layout().block_size(), 16);
  EXPECT_GT(info.kv_layout().num_layers(), 0);
  EXPECT_GT(info.kv_layout().num_kv_heads(), 0);
  EXPECT_GT(info.kv_layout().head_dim(), 0);
  EXPECT_EQ(info.kv_layout().element_bytes(), 4);
  EXPECT_TRUE(info.transfer_descriptor().empty());
}

TEST(WorkerTest, InvalidRequestIsInvalidArgumentAndTheNextSucceeds) {
  auto worker = StartWorker({});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());

  Streamed out = Generate(*stub, Greedy({}, 4));
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(out.status.error_message().find("prompt is empty"), std::string::npos);

  out = Generate(*stub, Greedy({1, 9999}, 4));
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(out.status.error_message().find("outside the vocabulary"), std::string::npos);

  out = Generate(*stub, Greedy({1, 2, 3}, 4000));
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(out.status.error_message().find("context"), std::string::npos);
  EXPECT_EQ(out.messages, 0);

  out = Generate(*stub, Greedy({1, 2, 3}, 5));
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(out.tokens.size(), 5u);
  EXPECT_TRUE(out.finished);
}

TEST(WorkerTest, ClientCancelFreesTheRequestsBlocks) {
  auto worker = StartWorker({});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());
  int total_blocks = 0;
  {
    grpc::ClientContext ctx;
    v1::WorkerInfo info;
    ASSERT_TRUE(stub->GetInfo(&ctx, v1::GetInfoRequest(), &info).ok());
    total_blocks = info.total_blocks();
  }

  // Cancels the call from its own read loop once tokens flow, long before 2000 are made.
  grpc::ClientContext ctx;
  std::vector<int> free_while_running;
  const Streamed out = Generate(*stub, Greedy({1, 2, 3, 4, 5}, 2000), &ctx, [&](const Streamed& s) {
    if (s.tokens.size() >= 20 && free_while_running.empty()) {
      WaitForLoad(*stub, [&](const v1::LoadReport& r) {
        free_while_running.push_back(r.free_blocks());
        return true;
      });
      ctx.TryCancel();
    }
  });
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_FALSE(out.finished);
  ASSERT_EQ(free_while_running.size(), 1u);
  EXPECT_LT(free_while_running[0], total_blocks);

  EXPECT_TRUE(WaitForLoad(*stub, [&](const v1::LoadReport& r) {
    return r.free_blocks() == total_blocks && r.active_requests() == 0;
  })) << "blocks were not freed";
  // The same through /metrics, whose gauges refresh every 100 ms.
  std::string text;
  EXPECT_TRUE(WaitForMetrics(
      worker->metrics_port(),
      [](const std::string& m) {
        return MetricValue(m, R"(tandem_kvcache_blocks{state="used",tier="device"})") == 0 &&
               MetricValue(m, R"(tandem_worker_requests_total{status="cancelled"})") == 1;
      },
      &text))
      << text;
}

TEST(WorkerTest, CancelRpcEndsTheStreamAsCancelled) {
  auto worker = StartWorker({});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());
  bool found = false;
  const Streamed out =
      Generate(*stub, Greedy({7, 8, 9}, 2000, "req-1"), nullptr, [&](const Streamed& s) {
        if (s.messages == 1) {
          grpc::ClientContext ctx;
          v1::CancelRequest request;
          request.set_request_id("req-1");
          v1::CancelResponse response;
          EXPECT_TRUE(stub->Cancel(&ctx, request, &response).ok());
          found = response.found();
        }
      });
  EXPECT_TRUE(found);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_TRUE(out.finished);
  EXPECT_EQ(out.finish_reason, v1::FINISH_REASON_CANCELLED);
  EXPECT_LT(out.tokens.size(), 2000u);

  grpc::ClientContext ctx;
  v1::CancelRequest request;
  request.set_request_id("req-1");
  v1::CancelResponse response;
  ASSERT_TRUE(stub->Cancel(&ctx, request, &response).ok());
  EXPECT_FALSE(response.found());
}

TEST(WorkerTest, SigtermLetsSixteenStreamsFinish) {
  auto worker = StartWorker({});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());
  constexpr int kStreams = 16;
  constexpr int kMaxTokens = 400;
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
  std::atomic<int> finished{0};
  std::vector<Streamed> results(kStreams);
  std::vector<std::thread> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&, i] {
      bool counted = false;
      results[i] =
          Generate(*stub, Greedy({1 + i, 2, 3}, kMaxTokens), nullptr, [&](const Streamed& s) {
            if (s.finished) ++finished;
            if (counted) return;
            counted = true;
            std::lock_guard<std::mutex> lock(mu);
            ++started;
            cv.notify_all();
          });
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, seconds(60), [&] { return started == kStreams; }));
  }
  worker->Signal(SIGTERM);
  const int finished_before_signal = finished;
  EXPECT_LT(finished_before_signal, kStreams) << "the streams were too short to test a drain";
  // Draining: health says so, and new work is refused (after the drain the port is closed:
  // UNAVAILABLE as well).
  EXPECT_TRUE(WaitFor([&] { return worker->HealthStatus() != "SERVING"; }, seconds(10)));
  const Streamed late = Generate(*stub, Greedy({1, 2}, 4));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  {
    // Issue 14: a frontend probing a draining worker keeps it out of routing.
    grpc::ClientContext ctx;
    v1::WorkerInfo info;
    EXPECT_EQ(stub->GetInfo(&ctx, v1::GetInfoRequest(), &info).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }

  for (auto& c : clients) c.join();
  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE("stream " + std::to_string(i));
    EXPECT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_TRUE(results[i].finished);
    EXPECT_EQ(results[i].finish_reason, v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(results[i].tokens.size(), static_cast<size_t>(kMaxTokens));
  }
  const std::optional<int> code = worker->WaitExit(seconds(30));
  ASSERT_TRUE(code.has_value()) << worker->log();
  EXPECT_EQ(*code, 0) << worker->log();
  EXPECT_NE(worker->log().find("drained"), std::string::npos) << worker->log();
}

TEST(WorkerTest, DrainDeadlineCancelsWhatIsLeft) {
  auto worker = StartWorker({"--drain-timeout-s", "0.2"});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());
  bool signalled = false;
  const Streamed out = Generate(*stub, Greedy({1, 2, 3}, 2000), nullptr, [&](const Streamed&) {
    if (!signalled) worker->Signal(SIGTERM);
    signalled = true;
  });
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_TRUE(out.finished);
  EXPECT_EQ(out.finish_reason, v1::FINISH_REASON_CANCELLED);
  const std::optional<int> code = worker->WaitExit(seconds(30));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << worker->log();
}

TEST(WorkerTest, MetricsEndpointServesWorkerMetrics) {
  auto worker = StartWorker({});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());
  ASSERT_TRUE(Generate(*stub, Greedy({1, 2, 3}, 8)).status.ok());
  auto text = HttpGet(worker->metrics_port(), "/metrics");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(MetricValue(*text, R"(tandem_worker_requests_total{status="length"})"), 1) << *text;
  EXPECT_EQ(MetricValue(*text, "tandem_worker_generated_tokens_total"), 8) << *text;
  EXPECT_EQ(MetricValue(*text, "tandem_worker_time_to_first_token_seconds_count"), 1) << *text;
  EXPECT_NE(text->find("tandem_worker_active_requests"), std::string::npos);
  EXPECT_NE(text->find(R"(tandem_kvcache_blocks{state="free",tier="device"})"), std::string::npos);
}

// With host and disk tiers: a prefix pushed out of an 8-block pool, and out of a 4-block host
// tier onto the disk tier, is loaded back from disk, and /metrics says so.
TEST(WorkerTest, KvTiersKeepPrefixesAndReportThem) {
  const std::string disk =
      std::string(TANDEM_BINARY_DIR) + "/worker_test_kv-" + std::to_string(getpid());
  auto worker = StartWorker({"--num-blocks", "8", "--host-cache-blocks", "4",
                             "--disk-cache-path", disk, "--disk-cache-blocks", "32",
                             "--disk-cache-admit-after-reuses", "0"});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());
  std::vector<int32_t> prefix, filler;
  for (int i = 0; i < 48; ++i) prefix.push_back(10 + i);    // 3 full blocks
  for (int i = 0; i < 100; ++i) filler.push_back(200 + i);  // with 20 tokens: all 8 blocks
  const Streamed first = Generate(*stub, Greedy(prefix, 4));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  ASSERT_TRUE(Generate(*stub, Greedy(filler, 20)).status.ok());
  const Streamed again = Generate(*stub, Greedy(prefix, 4));
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.tokens, first.tokens);
  std::string text;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto body = HttpGet(worker->metrics_port(), "/metrics");
        text = body.ok() ? *body : "";
        return MetricValue(text, R"(tandem_kvcache_hits_total{tier="disk"})") >= 2;
      },
      seconds(10)))
      << text;
  EXPECT_EQ(MetricValue(text, R"(tandem_kvcache_blocks{state="used",tier="host"})"), 4) << text;
  EXPECT_GT(MetricValue(text, R"(tandem_kvcache_blocks{state="used",tier="disk"})"), 0) << text;
  EXPECT_GT(MetricValue(text, R"(tandem_kvcache_bytes_total{direction="device_to_host"})"), 0);
  EXPECT_GT(MetricValue(text, R"(tandem_kvcache_bytes_total{direction="to_disk"})"), 0);
  EXPECT_GT(MetricValue(text, R"(tandem_kvcache_bytes_total{direction="from_disk"})"), 0);
  EXPECT_EQ(MetricValue(text, "tandem_kvcache_disk_disabled"), 0);
  std::filesystem::remove(disk);
}

// Issue 15: one process hosts several mock workers, each a whole worker on its own port (own
// engine, pool and events); the mock's load reports carry its account of simulated time.
TEST(WorkerTest, MockReplicasAreWholeWorkersOnTheirOwnPorts) {
  auto worker = StartWorker({"--backend", "mock", "--replicas", "3", "--mock-speedup", "50",
                             "--num-blocks", "64", "--worker-id", "m"});
  ASSERT_NE(worker, nullptr);
  const std::vector<int> ports = worker->replica_grpc_ports();
  ASSERT_EQ(ports.size(), 3u);
  std::vector<std::vector<int32_t>> outputs;
  for (size_t i = 0; i < ports.size(); ++i) {
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(ports[i]),
                                       grpc::InsecureChannelCredentials());
    auto stub = v1::Worker::NewStub(channel);
    grpc::ClientContext ctx;
    v1::WorkerInfo info;
    ASSERT_TRUE(stub->GetInfo(&ctx, v1::GetInfoRequest(), &info).ok());
    EXPECT_EQ(info.worker_id(), "m/" + std::to_string(i));
    EXPECT_EQ(info.total_blocks(), 64);
    // The same prompt twice on each replica: each has its own prefix cache.
    for (int round = 0; round < 2; ++round) {
      const Streamed s = Generate(
          *stub, Greedy({5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22}, 8));
      ASSERT_TRUE(s.status.ok()) << s.status.error_message();
      EXPECT_EQ(s.tokens.size(), 8u);
      outputs.push_back(s.tokens);
    }
    EXPECT_TRUE(WaitForLoad(*stub, [](const v1::LoadReport& r) {
      return r.sim_expected_seconds() > 0 && r.sim_actual_seconds() > 0;
    }));
  }
  // The mock's tokens depend only on the seed and the context: every replica agrees.
  for (const auto& o : outputs) EXPECT_EQ(o, outputs[0]);
}

// Issue 16: the KV event stream of a fresh worker, from the start: one Stored event per computed
// full block, chained by parent hash, with the hashes a router computes from the prompt.
TEST(WorkerTest, KvEventStreamReportsStoredBlocksWithTheirChain) {
  auto worker = StartWorker({});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());
  const v1::WorkerInfo info = GetInfo(*stub);
  const int block_size = info.block_size();
  KvSubscription sub(*stub, 0);

  // Two full blocks and a part; then the same two blocks and a third, different one. One
  // output token each: only prompt blocks are computed.
  const std::vector<int32_t> a = Tokens(2 * block_size + 8, 3);
  std::vector<int32_t> b(a.begin(), a.begin() + 2 * block_size);
  for (int32_t t : Tokens(block_size, 100)) b.push_back(t);
  ASSERT_TRUE(Generate(*stub, Greedy(a, 1)).status.ok());
  ASSERT_TRUE(Generate(*stub, Greedy(b, 1)).status.ok());
  const std::vector<BlockHash> ha = HashBlocks(a, block_size, info.block_hash_seed());
  const std::vector<BlockHash> hb = HashBlocks(b, block_size, info.block_hash_seed());
  ASSERT_EQ(ha.size(), 2u);
  ASSERT_EQ(hb.size(), 3u);

  ASSERT_TRUE(sub.ReadEvents(3));
  EXPECT_TRUE(sub.parts.empty()) << "no snapshot for a subscriber from the start";
  ASSERT_EQ(sub.events.size(), 3u);
  const std::vector<BlockHash> expected = {ha[0], ha[1], hb[2]};
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE("event " + std::to_string(i));
    const v1::KvEvent& e = sub.events[i];
    EXPECT_EQ(e.id(), i + 1);
    ASSERT_TRUE(e.has_stored());
    EXPECT_EQ(e.stored().tier(), v1::KV_TIER_DEVICE);
    ASSERT_EQ(e.stored().block_hashes_size(), 1);
    EXPECT_EQ(e.stored().block_hashes(0), expected[i]);
    EXPECT_EQ(e.stored().has_parent(), i > 0);
  }
  EXPECT_EQ(sub.events[1].stored().parent_hash(), ha[0]);
  EXPECT_EQ(sub.events[2].stored().parent_hash(), hb[1]);
  EXPECT_EQ(hb[1], ha[1]);

  // The load reports carry the newest id; /metrics counts the subscriber and what it was sent.
  EXPECT_TRUE(WaitForKvLastId(*stub, 3));
  std::string text;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto body = HttpGet(worker->metrics_port(), "/metrics");
        text = body.ok() ? *body : "";
        return MetricValue(text, "tandem_worker_kv_event_subscribers") == 1 &&
               MetricValue(text, "tandem_worker_kv_events_total") == 3;
      },
      seconds(5)))
      << text;
}

// Issue 16: a ring of 4 events that has overflowed. A subscriber from 1 gets the snapshot of
// what the worker holds (as of the newest event), then live events from the next id; one from
// far beyond the newest id (it knew a previous incarnation) gets a snapshot too.
TEST(WorkerTest, KvEventRingOverflowGivesASnapshotThenLiveEvents) {
  auto worker = StartWorker({"--kv-event-capacity", "4"});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());
  const v1::WorkerInfo info = GetInfo(*stub);
  const int block_size = info.block_size();
  const uint64_t seed = info.block_hash_seed();
  const std::vector<int32_t> first = Tokens(6 * block_size, 11);
  ASSERT_TRUE(Generate(*stub, Greedy(first, 1)).status.ok());  // Events 1..6; the ring: 3..6.
  const std::vector<BlockHash> held = HashBlocks(first, block_size, seed);
  ASSERT_TRUE(WaitForKvLastId(*stub, 6));

  KvSubscription sub(*stub, 1);
  ASSERT_TRUE(sub.ReadSnapshot());
  EXPECT_TRUE(sub.events.empty());
  EXPECT_EQ(SnapshotHashes(sub.parts, 6), Sorted(held));

  const std::vector<int32_t> next = Tokens(2 * block_size, 200);
  ASSERT_TRUE(Generate(*stub, Greedy(next, 1)).status.ok());  // Events 7, 8.
  const std::vector<BlockHash> added = HashBlocks(next, block_size, seed);
  ASSERT_TRUE(sub.ReadEvents(2));
  ASSERT_EQ(sub.events.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(sub.events[i].id(), 7 + i);
    ASSERT_TRUE(sub.events[i].has_stored());
    EXPECT_EQ(sub.events[i].stored().block_hashes(0), added[i]);
  }
  EXPECT_TRUE(WaitForKvLastId(*stub, 8));

  KvSubscription stranger(*stub, 8 + 1000);
  ASSERT_TRUE(stranger.ReadSnapshot());
  std::vector<uint64_t> all(held.begin(), held.end());
  all.insert(all.end(), added.begin(), added.end());
  EXPECT_EQ(SnapshotHashes(stranger.parts, 8), Sorted(all));
  auto text = HttpGet(worker->metrics_port(), "/metrics");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(MetricValue(*text, "tandem_worker_kv_snapshots_total"), 2) << *text;
}

// Issue 17, first step: a prefill_only Generate keeps the prompt's blocks under a KV lease and
// says where they are; ReleaseKv frees them, once.
TEST(WorkerTest, PrefillOnlyLeasesThePromptsBlocksUntilReleaseKv) {
  auto worker = StartWorker({});
  ASSERT_NE(worker, nullptr);
  auto stub = v1::Worker::NewStub(worker->channel());
  const v1::WorkerInfo info = GetInfo(*stub);
  const int block_size = info.block_size();
  const std::vector<int32_t> prompt = Tokens(2 * block_size + 3, 40);
  const Streamed whole = Generate(*stub, Greedy(prompt, 4));
  v1::GenerateRequest request = Greedy(prompt, 4);
  request.set_prefill_only(true);
  const Streamed prefill = Generate(*stub, request);
  ASSERT_TRUE(prefill.status.ok()) << prefill.status.error_message();
  ASSERT_EQ(prefill.tokens.size(), 1u);
  EXPECT_EQ(prefill.tokens[0], whole.tokens[0]);
  ASSERT_TRUE(prefill.kv_handle.has_value());
  const v1::KvHandle& handle = *prefill.kv_handle;
  EXPECT_NE(handle.lease_id(), 0u);
  EXPECT_EQ(handle.block_ids_size(), 3);
  EXPECT_EQ(handle.num_tokens(), static_cast<int>(prompt.size()));
  EXPECT_GT(handle.expires_in_ms(), 0);
  EXPECT_EQ(handle.kv_layout().block_size(), block_size);
  EXPECT_EQ(handle.kv_layout().num_layers(), info.kv_layout().num_layers());
  // Held by the lease while nothing runs.
  EXPECT_TRUE(WaitForLoad(*stub, [&](const v1::LoadReport& r) {
    return r.active_requests() == 0 && r.free_blocks() == info.total_blocks() - 3;
  }));
  auto release = [&](uint64_t lease) {
    grpc::ClientContext ctx;
    v1::ReleaseKvRequest req;
    req.set_lease_id(lease);
    v1::ReleaseKvResponse resp;
    EXPECT_TRUE(stub->ReleaseKv(&ctx, req, &resp).ok());
    return resp.released();
  };
  EXPECT_FALSE(release(handle.lease_id() + 1));  // Someone else's (or nobody's) lease.
  EXPECT_TRUE(release(handle.lease_id()));
  EXPECT_FALSE(release(handle.lease_id()));
  EXPECT_TRUE(WaitForLoad(*stub, [&](const v1::LoadReport& r) {
    return r.free_blocks() == info.total_blocks();
  })) << "the lease's blocks were not freed";
}

// Issue 17: a worker started with --transfer registers its KV pool; a peer connects to the
// descriptor in the KV handle and reads the leased blocks with one-sided reads. Two workers with
// the same model computed the same prompt: their blocks hold the same KV.
TEST(WorkerTest, LeasedBlocksAreReadableByAPeerThroughTheHandlesDescriptor) {
  const std::vector<std::string> backends = transfer::AvailableBackends();
  if (std::find(backends.begin(), backends.end(), "ucx") == backends.end()) {
    GTEST_SKIP() << "built without UCX";
  }
  auto a = StartWorker({"--transfer", "ucx"}, kPrefillWorker);
  auto b = StartWorker({"--transfer", "ucx"}, kPrefillWorker);
  ASSERT_TRUE(a && b);
  std::vector<v1::KvHandle> handles;
  for (DaemonProcess* w : {a.get(), b.get()}) {
    auto stub = v1::Worker::NewStub(w->channel());
    const v1::WorkerInfo info = GetInfo(*stub);
    EXPECT_EQ(info.transfer_backend(), "ucx");
    EXPECT_FALSE(info.transfer_descriptor().empty());
    v1::GenerateRequest request = Greedy(Tokens(2 * info.block_size() + 5, 9), 4);
    request.set_prefill_only(true);
    const Streamed out = Generate(*stub, request);
    ASSERT_TRUE(out.kv_handle.has_value());
    EXPECT_EQ(out.kv_handle->transfer_descriptor(), info.transfer_descriptor());
    handles.push_back(*out.kv_handle);
  }
  const v1::KvLayout& l = handles[0].kv_layout();
  const size_t block_bytes = size_t{2} * l.num_layers() * l.block_size() * l.num_kv_heads() *
                             l.head_dim() * l.element_bytes();
  const size_t full = handles[0].num_tokens() / l.block_size();  // 2 full blocks, then a part.
  ASSERT_EQ(full, 2u);
  auto backend = transfer::CreateBackend("ucx");
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<std::vector<std::byte>> read(2, std::vector<std::byte>(full * block_bytes));
  for (int w = 0; w < 2; ++w) {
    auto local = (*backend)->Register(
        {.base = read[w].data(), .bytes = read[w].size(), .kind = transfer::MemoryKind::kHost});
    ASSERT_TRUE(local.ok()) << local.status();
    auto peer = (*backend)->Connect(
        {.backend = handles[w].transfer_backend(), .bytes = handles[w].transfer_descriptor()});
    ASSERT_TRUE(peer.ok()) << peer.status();
    std::vector<transfer::TransferOp> ops;
    for (size_t i = 0; i < full; ++i) {
      ops.push_back({.local_offset = i * block_bytes,
                     .remote_offset = static_cast<uint64_t>(handles[w].block_ids(i)) * block_bytes,
                     .bytes = block_bytes});
    }
    auto transfer = (*backend)->Post(**local, **peer, ops, transfer::Direction::kRead,
                                     std::chrono::steady_clock::now() + seconds(30));
    ASSERT_TRUE(transfer.ok()) << transfer.status();
    ASSERT_TRUE((*transfer)->Wait().ok());
  }
  EXPECT_TRUE(
      std::any_of(read[0].begin(), read[0].end(), [](std::byte x) { return x != std::byte{0}; }));
  EXPECT_TRUE(read[0] == read[1]) << "the two workers' KV of one prompt differs";
  // A peer's claim is checked where it matters: a descriptor of another backend is refused.
  EXPECT_FALSE(
      (*backend)->Connect({.backend = "nccl", .bytes = handles[0].transfer_descriptor()}).ok());
}

// The two worker daemons share their assembly; each says its role, and refuses another.
TEST(WorkerTest, EachDaemonReportsItsRole) {
  auto prefill = StartWorker({}, kPrefillWorker);
  auto decode = StartWorker({"--role", "decode"});
  ASSERT_TRUE(prefill && decode);
  auto prefill_stub = v1::Worker::NewStub(prefill->channel());
  EXPECT_EQ(GetInfo(*prefill_stub).role(), v1::WORKER_ROLE_PREFILL);
  EXPECT_EQ(GetInfo(*v1::Worker::NewStub(decode->channel())).role(), v1::WORKER_ROLE_DECODE);
  v1::GenerateRequest request = Greedy(Tokens(40, 3), 4);
  request.set_prefill_only(true);
  const Streamed out = Generate(*prefill_stub, request);
  ASSERT_TRUE(out.status.ok());
  ASSERT_TRUE(out.kv_handle.has_value());
  EXPECT_EQ(out.kv_handle->num_tokens(), 40);
  auto refused = DaemonProcess::Start(kPrefillWorker, {"--role", "decode"}, seconds(30));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--role: 'decode' is not one of prefill"),
            std::string::npos)
      << refused.status();
}

TEST(WorkerTest, BadKvEventCapacityIsRefusedNamingTheFlag) {
  auto daemon = DaemonProcess::Start(kWorker, {"--kv-event-capacity", "0"}, seconds(30));
  ASSERT_FALSE(daemon.ok());
  EXPECT_NE(daemon.status().message().find("--kv-event-capacity"), std::string::npos)
      << daemon.status();
}

TEST(WorkerTest, BadReplicaPortsAreRefusedNamingTheFlag) {
  auto daemon = DaemonProcess::Start(
      kWorker, {"--backend", "mock", "--replicas", "3", "--port", "5000,5001"}, seconds(30));
  ASSERT_FALSE(daemon.ok());
  EXPECT_NE(daemon.status().message().find("--port: 2 ports for 3 replicas"), std::string::npos)
      << daemon.status();
}

TEST(WorkerTest, BadModelIsAOneLineErrorAndExitCodeOne) {
  auto daemon = DaemonProcess::Start(kWorker, {"--model", "/nonexistent/model"}, seconds(30));
  ASSERT_FALSE(daemon.ok());
  EXPECT_NE(daemon.status().message().find("exited with 1"), std::string::npos) << daemon.status();
  const std::string message = daemon.status().message();
  const std::string log = message.substr(message.find(": ") + 2);
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  EXPECT_NE(log.find("/nonexistent/model"), std::string::npos) << log;
}

// Disaggregation between processes (issue 17): a decode worker given a prefill worker's KV
// handle pulls the prompt's KV over UCX and generates what one aggregated worker generates; when
// the prefill worker is gone (SIGKILL after it returned the handle) or the handle is a peer's
// nonsense, it prefills the prompt itself, with the same tokens, and counts it.
// Tokens of the golden model's vocabulary (256), the same for the same `seed`.
std::vector<int32_t> GoldenTokens(int n, int seed) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < n; ++i) tokens.push_back((seed * 31 + i * 7) % 250 + 3);
  return tokens;
}

class DisaggregationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::vector<std::string> backends = transfer::AvailableBackends();
    if (std::find(backends.begin(), backends.end(), "ucx") == backends.end()) {
      GTEST_SKIP() << "built without UCX";
    }
    // Chunks of 32 tokens: every prompt here is prefilled in several steps.
    prefill_ =
        StartWorker({"--model", kGoldenDir, "--transfer", "ucx", "--max-num-batched-tokens", "32"},
                    kPrefillWorker);
    decode_ = StartWorker({"--model", kGoldenDir, "--role", "decode", "--transfer", "ucx"});
    aggregated_ = StartWorker({"--model", kGoldenDir});
    ASSERT_TRUE(prefill_ && decode_ && aggregated_);
  }

  // The decode request for `request`, prefilled on the prefill worker: prompt plus first token,
  // with the handle. `first` receives the first token.
  v1::GenerateRequest Prefilled(const v1::GenerateRequest& request, int32_t* first) {
    auto stub = v1::Worker::NewStub(prefill_->channel());
    v1::GenerateRequest p = request;
    p.set_prefill_only(true);
    const Streamed out = Generate(*stub, p);
    EXPECT_TRUE(out.status.ok()) << out.status.error_message();
    EXPECT_EQ(out.tokens.size(), 1u);
    EXPECT_TRUE(out.kv_handle.has_value());
    *first = out.tokens.empty() ? 0 : out.tokens[0];
    v1::GenerateRequest d = request;
    d.add_prompt_tokens(*first);
    d.mutable_sampling()->set_max_tokens(request.sampling().max_tokens() - 1);
    d.mutable_kv_source()->set_peer(prefill_->grpc_address());
    if (out.kv_handle) *d.mutable_kv_source()->mutable_handle() = *out.kv_handle;
    return d;
  }

  double DecodeMetric(const std::string& sample) {
    auto text = HttpGet(decode_->metrics_port(), "/metrics");
    return text.ok() ? MetricValue(*text, sample) : -1;
  }

  // Waits until neither worker has a request (their load reports), holds a block beyond what
  // its cache keeps, or (the prefill worker) a lease.
  void ExpectNoLeaks() {
    for (DaemonProcess* w : {prefill_.get(), decode_.get()}) {
      if (w == nullptr) continue;
      auto stub = v1::Worker::NewStub(w->channel());
      EXPECT_TRUE(WaitForLoad(*stub, [](const v1::LoadReport& r) {
        return r.active_requests() == 0 && r.waiting_requests() == 0;
      }));
    }
    // The pools' used-block gauges back at 0 (cached blocks count as free), no lease held.
    for (DaemonProcess* w : {prefill_.get(), decode_.get()}) {
      if (w == nullptr) continue;
      std::string text;
      EXPECT_TRUE(WaitForMetrics(
          w->metrics_port(),
          [](const std::string& m) {
            return MetricValue(m, R"(tandem_kvcache_blocks{state="used",tier="device"})") == 0 &&
                   MetricValue(m, "tandem_worker_kv_leases") == 0;
          },
          &text))
          << text;
    }
  }

  std::vector<int32_t> Aggregated(const v1::GenerateRequest& request) {
    auto stub = v1::Worker::NewStub(aggregated_->channel());
    const Streamed out = Generate(*stub, request);
    EXPECT_TRUE(out.status.ok()) << out.status.error_message();
    return out.tokens;
  }

  std::unique_ptr<DaemonProcess> prefill_, decode_, aggregated_;
};

TEST_F(DisaggregationTest, PulledKvDecodesLikeOneWorkerAndOnlyMissingBlocksMove) {
  auto decode = v1::Worker::NewStub(decode_->channel());
  const v1::GenerateRequest whole = Greedy(GoldenTokens(6 * 16 + 5, 3), 12);
  const std::vector<int32_t> expected = Aggregated(whole);
  ASSERT_EQ(expected.size(), 12u);
  int32_t first = 0;
  const Streamed out = Generate(*decode, Prefilled(whole, &first));
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(first, expected[0]);
  EXPECT_EQ(out.tokens, std::vector<int32_t>(expected.begin() + 1, expected.end()));
  EXPECT_TRUE(
      WaitFor([&] { return DecodeMetric("tandem_worker_kv_pulls_total{outcome=\"pulled\"}") == 1; },
              seconds(5)));
  const double bytes = DecodeMetric("tandem_worker_kv_pulled_bytes_total");
  EXPECT_GT(bytes, 0);

  // A longer prompt that starts with it: the decode worker holds its 6 full blocks and pulls
  // only the 4 after them (3 full, and the part of one).
  std::vector<int32_t> longer = GoldenTokens(6 * 16 + 5, 3);
  longer.resize(6 * 16);
  for (int32_t t : GoldenTokens(3 * 16 + 2, 11)) longer.push_back(t);
  const v1::GenerateRequest more = Greedy(longer, 8);
  const std::vector<int32_t> expected_more = Aggregated(more);
  const Streamed out_more = Generate(*decode, Prefilled(more, &first));
  EXPECT_EQ(out_more.tokens, std::vector<int32_t>(expected_more.begin() + 1, expected_more.end()));
  EXPECT_TRUE(
      WaitFor([&] { return DecodeMetric("tandem_worker_kv_pulls_total{outcome=\"pulled\"}") == 2; },
              seconds(5)));
  EXPECT_NEAR(DecodeMetric("tandem_worker_kv_pulled_bytes_total") - bytes, bytes / 7 * 4, 1)
      << "7 blocks the first time, 4 the second";
  EXPECT_EQ(DecodeMetric("tandem_worker_kv_pulls_total{outcome=\"recomputed\"}"), 0);
  ExpectNoLeaks();
}

TEST_F(DisaggregationTest, APrefillWorkerKilledAfterItsHandleIsRecomputedWithTheSameTokens) {
  const v1::GenerateRequest whole = Greedy(GoldenTokens(5 * 16 + 9, 5), 10);
  const std::vector<int32_t> expected = Aggregated(whole);
  int32_t first = 0;
  const v1::GenerateRequest decode_request = Prefilled(whole, &first);
  prefill_->Signal(SIGKILL);
  ASSERT_TRUE(prefill_->WaitExit(seconds(10)).has_value());
  prefill_.reset();
  auto decode = v1::Worker::NewStub(decode_->channel());
  const Streamed out = Generate(*decode, decode_request);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(out.tokens, std::vector<int32_t>(expected.begin() + 1, expected.end()));
  EXPECT_TRUE(WaitFor(
      [&] { return DecodeMetric("tandem_worker_kv_pulls_total{outcome=\"recomputed\"}") == 1; },
      seconds(5)));
  ExpectNoLeaks();
}

TEST_F(DisaggregationTest, NonsenseInAKvHandleIsRecomputedNeverTrusted) {
  const v1::GenerateRequest whole = Greedy(GoldenTokens(4 * 16 + 3, 8), 6);
  const std::vector<int32_t> expected = Aggregated(whole);
  auto decode = v1::Worker::NewStub(decode_->channel());
  const std::vector<std::function<void(v1::KvSource*)>> spoil = {
      [](v1::KvSource* s) { s->mutable_handle()->set_transfer_descriptor("garbage"); },
      [](v1::KvSource* s) { s->mutable_handle()->set_block_ids(0, 1 << 30); },
      [](v1::KvSource* s) { s->mutable_handle()->set_num_tokens(-4); },
      [](v1::KvSource* s) { s->mutable_handle()->mutable_kv_layout()->set_element_bytes(7); },
      [](v1::KvSource* s) { s->mutable_handle()->set_lease_id(12345); },
      [](v1::KvSource* s) { s->set_peer("127.0.0.1:1"); },
      // A prefill worker without --transfer: nothing to read (never "simulated" on a real pool).
      [](v1::KvSource* s) {
        s->mutable_handle()->clear_transfer_backend();
        s->mutable_handle()->clear_transfer_descriptor();
      },
  };
  int recomputed = 0;
  for (size_t i = 0; i < spoil.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    v1::GenerateRequest salted = whole;
    salted.set_cache_salt("case " + std::to_string(i));  // Nothing cached from an earlier case.
    int32_t first = 0;
    v1::GenerateRequest bad = Prefilled(salted, &first);
    const uint64_t lease = bad.kv_source().handle().lease_id();
    spoil[i](bad.mutable_kv_source());
    const Streamed out = Generate(*decode, bad);
    ASSERT_TRUE(out.status.ok()) << out.status.error_message();
    EXPECT_EQ(out.tokens, std::vector<int32_t>(expected.begin() + 1, expected.end()));
    ++recomputed;
    EXPECT_TRUE(WaitFor(
        [&] {
          return DecodeMetric("tandem_worker_kv_pulls_total{outcome=\"recomputed\"}") == recomputed;
        },
        seconds(5)));
    // Whatever the spoiled handle said, the real lease goes (released here if still held).
    auto prefill = v1::Worker::NewStub(prefill_->channel());
    grpc::ClientContext ctx;
    v1::ReleaseKvRequest release;
    release.set_lease_id(lease);
    v1::ReleaseKvResponse released;
    EXPECT_TRUE(prefill->ReleaseKv(&ctx, release, &released).ok());
  }
  ExpectNoLeaks();
}

}  // namespace
}  // namespace tandem::testing
