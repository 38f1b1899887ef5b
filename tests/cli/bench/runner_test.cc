// The generator end to end against a scripted server: timings measured against the delays the
// server was told to keep, and every way a request can fail, each counted by kind and never
// retried. Delays are real (the server's timers), so bounds are one-sided where physics allows
// (nothing arrives before it is sent) and generous above.
#include "cli/bench/runner.h"

#include <gtest/gtest.h>

#include <mutex>

#include "cli/bench/arrival.h"
#include "cli/bench/fake_server.h"

namespace tandem::bench {
namespace {

using std::chrono::milliseconds;

// Slack above a scripted delay: scheduling on a loaded 2-core machine (ctest -j2 beside the
// integration tests' daemons has delayed a wake-up past 40 ms). Lower bounds stay as they were:
// a token can be late, never early (only a gap after a late one shrinks).
constexpr double kSlackMs = 150;

Dataset Requests(int n, int output_len = 4) {
  DatasetOptions o;
  o.input_len = 8;
  o.output_len = output_len;
  o.num_requests = n;
  return MakeRandomDataset(o);
}

class RunnerTest : public ::testing::Test {
 protected:
  void Serve(FakeScript script) {
    FakeServerOptions options;
    options.script = std::move(script);
    auto server = FakeServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    port_ = server_->port();
  }

  RunResult Run(const Dataset& dataset, const RunOptions& run = RunOptions(),
                std::vector<double> arrivals = {}, double request_timeout_s = 10,
                const std::atomic<bool>* stop = nullptr) {
    HttpClientOptions o;
    o.port = port_;
    o.request_timeout_s = request_timeout_s;
    o.connect_timeout_s = 2;
    auto client = HttpClient::Create(o);
    EXPECT_TRUE(client.ok()) << client.status();
    client_ = std::move(client).value();
    if (arrivals.empty()) arrivals.assign(dataset.requests.size(), 0.0);
    return RunLoad(*client_, dataset, arrivals, run, stop, nullptr);
  }

  std::unique_ptr<FakeServer> server_;
  std::unique_ptr<HttpClient> client_;
  int port_ = 0;
};

TEST_F(RunnerTest, ScriptedDelaysAreWhatTheMetricsSay) {
  // First token after 50 ms, then one every 20 ms: TTFT 50, ITL 20, TPOT 20, E2E 130.
  Serve([](const FakeRequest&) {
    return CompletionStream(5, milliseconds(50), milliseconds(20), 8, /*cached_tokens=*/3);
  });
  const RunResult result = Run(Requests(4, 5));
  for (const RequestRecord& r : result.records) {
    ASSERT_TRUE(r.completed()) << r.error_kind << ": " << r.error_message;
    const RequestTimings t = ComputeTimings(r);
    EXPECT_GE(*t.ttft_s * 1e3, 49.0);
    EXPECT_LE(*t.ttft_s * 1e3, 50 + kSlackMs);
    EXPECT_GE(t.e2e_s * 1e3, 129.0);
    EXPECT_LE(t.e2e_s * 1e3, 130 + kSlackMs);
    ASSERT_EQ(t.itl_s.size(), 4u);
    EXPECT_EQ(r.output_tokens, 5);
    EXPECT_EQ(r.cached_tokens, 3);
  }
  const RunSummary s = SummarizeRun(result.records, result.duration_s, SloOptions());
  EXPECT_EQ(s.completed, 4);
  EXPECT_GE(*s.itl_ms.p50, 15.0);
  EXPECT_LE(*s.itl_ms.p50, 20 + kSlackMs / 4);
  EXPECT_GE(*s.tpot_ms.mean, 12.0);
  EXPECT_LE(*s.tpot_ms.mean, 20 + kSlackMs / 4);
  EXPECT_NEAR(*s.cached_prompt_tokens_fraction, 3.0 / 8.0, 1e-9);
  // All four ran at once: the run lasts one request, throughput is 4 / that.
  EXPECT_GE(result.duration_s, 0.129);
  EXPECT_LE(result.duration_s, 0.130 + kSlackMs / 1e3);
  EXPECT_NEAR(s.request_throughput, 4 / result.duration_s, 1e-9);
  EXPECT_NEAR(s.output_throughput, 20 / result.duration_s, 1e-9);
}

TEST_F(RunnerTest, GoodputCountsRequestsMeetingEverySlo) {
  // Requests alternate: fast (TTFT 5 ms) and slow (TTFT 120 ms).
  int n = 0;
  Serve([&n](const FakeRequest&) {
    return CompletionStream(2, milliseconds(n++ % 2 == 0 ? 5 : 120), milliseconds(5), 8);
  });
  const RunResult result = Run(Requests(6, 2));
  SloOptions slo;
  slo.ttft_ms = 60;
  const RunSummary s = SummarizeRun(result.records, result.duration_s, slo);
  EXPECT_EQ(s.completed, 6);
  EXPECT_NEAR(*s.goodput, 3 / result.duration_s, 1e-9);
}

TEST_F(RunnerTest, RequestsCarryForcedLengthsStreamingAndTheKey) {
  std::mutex mu;
  std::vector<FakeRequest> seen;
  Serve([&](const FakeRequest& r) {
    std::lock_guard lock(mu);
    seen.push_back(r);
    return CompletionStream(1, {}, {}, 8);
  });
  RunOptions run;
  run.api_key = "sk-test";
  run.body.model = "m1";
  run.body.tokens = TokenSpace(5000, 0);
  Dataset d = Requests(2, 3);
  const RunResult result = Run(d, run);
  std::lock_guard lock(mu);
  ASSERT_EQ(seen.size(), 2u);
  const FakeRequest& r = seen[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/v1/completions");
  EXPECT_NE(r.headers.find("Authorization: Bearer sk-test"), std::string::npos);
  for (const char* part :
       {"\"model\":\"m1\"", "\"prompt\":[", "\"max_tokens\":3", "\"ignore_eos\":true",
        "\"stream\":true", "\"stream_options\":{\"include_usage\":true}"}) {
    EXPECT_NE(r.body.find(part), std::string::npos) << part << " in " << r.body;
  }
  EXPECT_NE(seen[0].body, seen[1].body);  // Random prompts differ.
}

TEST_F(RunnerTest, ServerErrorsAreCountedByKindAndNotRetried) {
  Serve([](const FakeRequest&) {
    return JsonResponse(503, R"({"error":{"message":"no worker","type":"unavailable"}})");
  });
  const RunResult result = Run(Requests(5));
  const RunSummary s = SummarizeRun(result.records, result.duration_s, SloOptions());
  EXPECT_EQ(s.completed, 0);
  EXPECT_EQ(s.errors.at("http_5xx:503"), 5);
  EXPECT_EQ(server_->requests(), 5);
  EXPECT_EQ(result.records[0].error_message, "no worker");
  Serve([](const FakeRequest&) { return JsonResponse(404, "nope"); });
  const RunResult r404 = Run(Requests(1));
  EXPECT_EQ(r404.records[0].error_kind, "http_4xx:404");
}

TEST_F(RunnerTest, MalformedSseIsAStreamError) {
  Serve([](const FakeRequest&) {
    FakeResponse r = CompletionStream(1, {}, {}, 8);
    r.events.insert(r.events.begin(), FakeEvent{{}, "data: {\"choices\": [oops\n\n"});
    return r;
  });
  const RunResult result = Run(Requests(2));
  for (const RequestRecord& r : result.records) {
    EXPECT_EQ(r.error_kind, "stream_error");
    EXPECT_NE(r.error_message.find("malformed SSE"), std::string::npos) << r.error_message;
  }
}

TEST_F(RunnerTest, ErrorEventMidStreamIsAStreamError) {
  Serve([](const FakeRequest&) {
    FakeResponse r = CompletionStream(2, {}, {}, 8);
    r.events.insert(r.events.begin() + 1,
                    FakeEvent{{}, "data: {\"error\":{\"message\":\"worker lost\"}}\n\n"});
    return r;
  });
  const RunResult result = Run(Requests(1));
  EXPECT_EQ(result.records[0].error_kind, "stream_error");
  EXPECT_NE(result.records[0].error_message.find("worker lost"), std::string::npos);
}

TEST_F(RunnerTest, StreamsCutShortAreIncomplete) {
  Serve([](const FakeRequest& request) {
    FakeResponse r = CompletionStream(3, {}, milliseconds(5), 8);
    r.events.pop_back();                                                 // No usage, no [DONE].
    r.cut = request.body.find("\"max_tokens\":2") == std::string::npos;  // Close the connection.
    return r;
  });
  const RunResult result = Run(Requests(1, 3));
  EXPECT_EQ(result.records[0].error_kind, "incomplete");
  EXPECT_EQ(result.records[0].content_s.size(), 3u);  // What arrived is kept.
  // A body that ends properly but without [DONE] is incomplete too.
  const RunResult ended = Run(Requests(1, 2));
  EXPECT_EQ(ended.records[0].error_kind, "incomplete");
  EXPECT_NE(ended.records[0].error_message.find("[DONE]"), std::string::npos);
}

TEST_F(RunnerTest, AResponseThatIsNotAStreamIsAStreamError) {
  Serve([](const FakeRequest&) { return JsonResponse(200, R"({"choices":[]})"); });
  const RunResult result = Run(Requests(1));
  EXPECT_EQ(result.records[0].error_kind, "stream_error");
  EXPECT_NE(result.records[0].error_message.find("Content-Type"), std::string::npos);
}

TEST_F(RunnerTest, ServerDownIsAConnectError) {
  port_ = ClosedLoopbackPort();
  const RunResult result = Run(Requests(3));
  for (const RequestRecord& r : result.records) EXPECT_EQ(r.error_kind, "connect");
}

TEST_F(RunnerTest, SlowResponsesTimeOut) {
  Serve([](const FakeRequest&) { return CompletionStream(1, milliseconds(5000), {}, 8); });
  const auto start = std::chrono::steady_clock::now();
  const RunResult result = Run(Requests(2), RunOptions(), {}, /*request_timeout_s=*/0.2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  for (const RequestRecord& r : result.records) EXPECT_EQ(r.error_kind, "timeout");
}

TEST_F(RunnerTest, MaxConcurrencyHoldsRequestsAndReusesConnections) {
  Serve([](const FakeRequest&) { return CompletionStream(1, milliseconds(30), {}, 8); });
  RunOptions run;
  run.max_concurrency = 2;
  const RunResult result = Run(Requests(6), run);
  const RunSummary s = SummarizeRun(result.records, result.duration_s, SloOptions());
  EXPECT_EQ(s.completed, 6);
  EXPECT_GE(result.duration_s, 0.089);   // Three waves of 30 ms.
  EXPECT_EQ(server_->connections(), 2);  // Keep-alive: one connection per slot.
  EXPECT_GT(result.records[5].start_s, result.records[5].scheduled_s);
}

// Found replaying the Mooncake trace (issue 15): a request written on a keep-alive connection
// just as the server closed it for idleness failed with nothing read. Connections idle past
// max_idle_s are closed, not reused.
TEST_F(RunnerTest, IdleConnectionsPastMaxIdleAreNotReused) {
  Serve([](const FakeRequest&) { return CompletionStream(1, {}, {}, 8); });
  HttpClientOptions o;
  o.port = port_;
  o.max_idle_s = 0.05;
  auto client = HttpClient::Create(o);
  ASSERT_TRUE(client.ok()) << client.status();
  // Two requests 200 ms apart: the second needs a new connection.
  const std::vector<double> arrivals = {0.0, 0.2};
  const RunResult result = RunLoad(**client, Requests(2), arrivals, RunOptions(), nullptr, nullptr);
  for (const RequestRecord& r : result.records) EXPECT_TRUE(r.error_kind.empty()) << r.error_kind;
  EXPECT_EQ(server_->connections(), 2);
  // The last one is closed too, once stale.
  for (int i = 0; i < 10 && (*client)->connections() > 0; ++i) {
    (*client)->Poll(std::chrono::milliseconds(30));
  }
  EXPECT_EQ((*client)->connections(), 0u);
}

TEST_F(RunnerTest, ArrivalsPaceTheRequests) {
  Serve([](const FakeRequest&) { return CompletionStream(1, {}, {}, 8); });
  const RunResult result = Run(Requests(4), RunOptions(), {0.0, 0.05, 0.1, 0.15});
  for (const RequestRecord& r : result.records) {
    EXPECT_GE(r.start_s, r.scheduled_s);
    EXPECT_LE(r.start_s, r.scheduled_s + kSlackMs / 1e3);
  }
}

TEST_F(RunnerTest, DurationCutsTheTraceAndCancelsWhatIsInFlight) {
  Serve([](const FakeRequest&) { return CompletionStream(1, milliseconds(2000), {}, 8); });
  RunOptions run;
  run.duration_s = 0.25;
  const auto start = std::chrono::steady_clock::now();
  const RunResult result = Run(Requests(10), run, GammaArrivals(10, 10, 1000, 0));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_TRUE(result.duration_reached);
  const RunSummary s = SummarizeRun(result.records, result.duration_s, SloOptions());
  EXPECT_EQ(s.completed, 0);
  EXPECT_EQ(s.failed, 0);
  EXPECT_EQ(s.cancelled + s.not_sent, 10);
  EXPECT_GE(s.cancelled, 2);
  EXPECT_GE(s.not_sent, 6);
  EXPECT_NEAR(result.duration_s, 0.25, 0.05);
}

TEST_F(RunnerTest, StopEndsTheRunWithWhatCompleted) {
  std::atomic<bool> stop{false};
  Serve([&stop](const FakeRequest& r) {
    if (r.body.find("\"max_tokens\":9") != std::string::npos) stop = true;  // The 3rd request.
    return CompletionStream(1, {}, {}, 8);
  });
  Dataset d = Requests(5, 1);
  d.requests[2].output_len = 9;
  const RunResult result = Run(d, RunOptions(), {0, 0, 0.05, 10, 10}, 10, &stop);
  EXPECT_TRUE(result.interrupted);
  const RunSummary s = SummarizeRun(result.records, result.duration_s, SloOptions());
  EXPECT_GE(s.completed, 2);
  EXPECT_EQ(s.not_sent, 2);
}

}  // namespace
}  // namespace tandem::bench
