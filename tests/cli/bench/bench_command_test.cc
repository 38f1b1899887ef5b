// `tandem bench` as a user runs it: the real binary against a scripted server in this process,
// its JSON report, sweeps, compare, plots, and one clear line for each kind of bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cli/bench/fake_server.h"
#include "cli_test_util.h"

namespace tandem::bench {
namespace {

namespace fs = std::filesystem;
using cli::testing::ExpectOneLineError;
using cli::testing::RunTandem;
using cli::testing::TempDirTest;
using Json = nlohmann::json;
using std::chrono::milliseconds;

class BenchCommandTest : public TempDirTest {
 protected:
  // Serves /v1/models (model "fake", vocabulary 5000) and streams `tokens` tokens per request,
  // recording every prompt id it sees.
  void Serve(int tokens = 3, milliseconds first = milliseconds(1)) {
    FakeServerOptions options;
    options.script = [this, tokens, first](const FakeRequest& r) {
      if (r.path == "/v1/models") return JsonResponse(200, ModelsJson("fake", 5000));
      const Json body = Json::parse(r.body, nullptr, false);
      std::lock_guard lock(mu_);
      if (body.contains("prompt") && body["prompt"].is_array()) {
        for (const Json& id : body["prompt"]) max_id_ = std::max(max_id_, id.get<int>());
      }
      return CompletionStream(tokens, first, milliseconds(1), 8, 2);
    };
    auto server = FakeServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
  }
  std::string Url() const {
    return "--base-url http://127.0.0.1:" + std::to_string(server_->port());
  }
  static Json ReadJson(const fs::path& p) {
    std::ifstream in(p);
    return Json::parse(in, nullptr, false);
  }

  std::unique_ptr<FakeServer> server_;
  std::mutex mu_;
  int max_id_ = -1;
};

TEST_F(BenchCommandTest, ReportsARunAndWritesTheDocumentedJson) {
  Serve();
  const fs::path out = dir_ / "run.json";
  const auto r = RunTandem("bench " + Url() + " --num-requests 5 --input-len 16 --output-len 3 " +
                           "--goodput ttft:1000,tpot:1000 --json-out " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("completed / failed / cancelled     5 / 0 / 0"), std::string::npos) << r.out;
  const Json j = ReadJson(out);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["format"], "tandem-bench/1");
  const Json& s = j["summary"];
  for (const char* key : {"completed", "failed", "duration_s", "request_throughput",
                          "output_throughput", "goodput", "cached_prompt_tokens_fraction"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  for (const char* key : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"}) {
    for (const char* stat : {"mean", "p50", "p90", "p99"}) {
      EXPECT_TRUE(s[key][stat].is_number()) << key << "." << stat;
    }
  }
  EXPECT_EQ(s["completed"], 5);
  EXPECT_NEAR(s["goodput"].get<double>(), s["request_throughput"].get<double>(), 1e-3);
  EXPECT_NEAR(s["cached_prompt_tokens_fraction"].get<double>(), 2.0 / 8.0, 1e-6);
  ASSERT_EQ(j["requests"].size(), 5u);
  const Json& req = j["requests"][0];
  for (const char* key : {"index", "start_s", "prompt_tokens", "output_tokens", "cached_tokens",
                          "ttft_ms", "itl_ms", "e2e_ms", "error"}) {
    EXPECT_TRUE(req.contains(key)) << key;
  }
  EXPECT_EQ(req["itl_ms"].size(), 2u);
  EXPECT_EQ(j["config"]["model"], "fake");     // The first of GET /v1/models ...
  EXPECT_EQ(j["config"]["vocab_size"], 5000);  // ... and its vocabulary,
  std::lock_guard lock(mu_);
  EXPECT_GE(max_id_, 1000);
  EXPECT_LT(max_id_, 5000);  // which the prompts stay inside.
}

TEST_F(BenchCommandTest, SweepGivesOneRunPerRateAndCompareShowsRatios) {
  Serve();
  const fs::path a = dir_ / "a.json", b = dir_ / "b.json";
  auto r = RunTandem("bench " + Url() + " --num-requests 4 --input-len 8 --output-len 2 " +
                     "--request-rates 200,inf --json-out " + a.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json sweep = ReadJson(a);
  ASSERT_EQ(sweep["runs"].size(), 2u);
  EXPECT_EQ(sweep["runs"][0]["config"]["request_rate"], 200);
  EXPECT_EQ(sweep["runs"][1]["config"]["request_rate"], "inf");
  r = RunTandem("bench " + Url() + " --num-requests 4 --input-len 8 --output-len 2 " +
                "--request-rates 200,inf --json-out " + b.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunTandem("bench compare " + a.string() + " " + b.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("B/A"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("run 2"), std::string::npos) << r.out;
  // Both runs completed 4 requests: ratio 1.
  EXPECT_NE(r.out.find("completed                                4.00           4.00     1.000"),
            std::string::npos)
      << r.out;
  ExpectOneLineError(RunTandem("bench compare " + a.string() + " " + (dir_ / "no.json").string()),
                     "no.json");
}

TEST_F(BenchCommandTest, ServerDownGivesAPartialReportAndAFailingExit) {
  const std::string url = "--base-url http://127.0.0.1:" + std::to_string(ClosedLoopbackPort());
  const fs::path out = dir_ / "down.json";
  auto r = RunTandem("bench " + url + " --model m --vocab-size 4000 --num-requests 3 --json-out " +
                     out.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("0 / 3 / 0"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("3 of 3 requests failed (connect: 3)"), std::string::npos) << r.err;
  const Json j = ReadJson(out);
  EXPECT_EQ(j["errors"]["connect"], 3);
  // Without --model there is nothing to run: one line saying why.
  ExpectOneLineError(RunTandem("bench " + url + " --num-requests 3"),
                     "cannot list the served models");
}

TEST_F(BenchCommandTest, ServerErrorsFailTheRunWithTheirKind) {
  FakeServerOptions options;
  options.script = [](const FakeRequest&) {
    return JsonResponse(500, R"({"error":{"message":"boom"}})");
  };
  server_ = std::move(FakeServer::Start(std::move(options))).value();
  const auto r = RunTandem("bench " + Url() + " --model m --vocab-size 4000 --num-requests 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("error http_5xx:500: 2 (boom)"), std::string::npos) << r.out;
}

TEST_F(BenchCommandTest, BadFlagsAndInputsGiveOneLineAndExitTwo) {
  struct Case {
    std::string args, expect;
  };
  const fs::path trace = dir_ / "t.jsonl";
  std::ofstream(trace)
      << R"({"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1]})"
      << "\n{\"timestamp\": 1, \"input_length\": 5}\n";
  const std::vector<Case> cases = {
      {"bench --dataset nope", "--dataset"},
      {"bench --request-rate -2", "--request-rate"},
      {"bench --request-rates 1,x", "--request-rates"},
      {"bench --request-rate 1 --request-rates 1,2", "not both"},
      {"bench --burstiness 0", "--burstiness"},
      {"bench --goodput ttft", "--goodput"},
      {"bench --base-url https://x", "https"},
      {"bench --dataset azure --path " + (dir_ / "none.csv").string(), "none.csv"},
      {"bench --dataset mooncake --path " + trace.string(), "t.jsonl:2"},
      {"bench --dataset random --endpoint chat", "--endpoint chat"},
      {"bench --no-such-flag", "no-such-flag"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const auto r = RunTandem(c.args);
    EXPECT_EQ(r.exit_code, 2);
    ExpectOneLineError(r, c.expect);
  }
}

TEST_F(BenchCommandTest, CtrlCPrintsThePartialReport) {
  Serve(1, milliseconds(10000));  // Nothing completes before the signal.
  const std::string cmd = "timeout --preserve-status -s INT 0.5 " + std::string(TANDEM_BINARY_DIR) +
                          "/bin/tandem bench " + Url() + " --num-requests 3 --output-len 1 " +
                          "--json-out " + (dir_ / "int.json").string() + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status)) << out;
  EXPECT_EQ(WEXITSTATUS(status), 130) << out;
  EXPECT_NE(out.find("(interrupted)"), std::string::npos) << out;
  EXPECT_NE(out.find("0 / 0 / 3"), std::string::npos) << out;
  EXPECT_TRUE(ReadJson(dir_ / "int.json").is_object());
}

TEST_F(BenchCommandTest, PlotsAreDrawnFromTheReport) {
  if (std::system("/usr/bin/python3 -c 'import matplotlib' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-matplotlib is not installed (scripts/setup.sh installs it)";
  }
  Serve();
  const fs::path plots = dir_ / "plots";
  const auto r = RunTandem("bench " + Url() + " --num-requests 6 --input-len 8 --output-len 4 " +
                           "--request-rates 500,inf --plots " + plots.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* png : {"ttft_cdf.png", "itl_cdf.png", "throughput.png", "latency_vs_rate.png"}) {
    EXPECT_TRUE(fs::exists(plots / png)) << png << "; " << r.err;
  }
}

}  // namespace
}  // namespace tandem::bench
