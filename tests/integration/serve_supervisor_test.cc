// Issue 14 regression tests of `tandem serve` (the demo model, real daemons on loopback): it
// supervises its daemons instead of stopping when one dies (item 1), passes its drain deadline
// on and reports cut requests (item 5), keeps the API key off every command line (item 3), says
// which daemon wrote each log line (item 11), refuses bad flags before starting anything and
// shows its defaults (item 12), and leaves no temporary directory behind (item 14).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "daemon_process.h"
#include "frontend_util.h"
#include "tandem/v1/inference.grpc.pb.h"

extern char** environ;

namespace tandem::testing {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kTandem = std::string(TANDEM_BINARY_DIR) + "/bin/tandem";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::string RunCommand(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  char buf[512];
  while (p != nullptr && fgets(buf, sizeof(buf), p) != nullptr) out += buf;
  if (p != nullptr) pclose(p);
  return out;
}

std::string CommandLine(pid_t pid) {
  std::string text = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  std::replace(text.begin(), text.end(), '\0', ' ');
  return text;
}

std::string Comm(pid_t pid) {
  std::string name = ReadFile("/proc/" + std::to_string(pid) + "/comm");
  if (!name.empty() && name.back() == '\n') name.pop_back();
  return name;
}

// A `tandem serve` process with its own TMPDIR and state directory.
class Serve {
 public:
  // Starts serve with `args` (plus --port 0, --port-file, --state-dir); with `wait`, waits for
  // its port file (written once GET /health answered 200).
  Serve(const fs::path& dir, std::vector<std::string> args,
        std::vector<std::pair<std::string, std::string>> env = {}, bool wait = true)
      : dir_(dir) {
    fs::create_directories(dir_ / "tmp");
    std::vector<std::string> argv = {kTandem,       "serve",
                                     "--port",      "0",
                                     "--port-file", (dir_ / "serve.json").string(),
                                     "--state-dir", (dir_ / "state").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    std::vector<std::string> entries;
    for (char** e = environ; *e != nullptr; ++e) entries.push_back(*e);
    entries.push_back("TMPDIR=" + (dir_ / "tmp").string());
    for (const auto& [k, v] : env) entries.push_back(k + "=" + v);
    std::vector<char*> cenv;
    for (std::string& e : entries) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, (dir_ / "serve.out").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, (dir_ / "serve.err").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EXPECT_EQ(posix_spawn(&pid_, kTandem.c_str(), &actions, nullptr, cargv.data(), cenv.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
    if (!wait) return;
    const bool ready =
        WaitFor([&] { return fs::exists(dir_ / "serve.json") || Exited(); }, seconds(120));
    EXPECT_TRUE(ready && !exit_code_) << log();
    if (!ready || exit_code_) return;
    const Json ports = Json::parse(ReadFile(dir_ / "serve.json"));
    http_port_ = ports["http_port"];
    grpc_port_ = ports["grpc_port"];
  }
  ~Serve() {
    if (!Exited()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  int http_port() const { return http_port_; }
  int grpc_port() const { return grpc_port_; }
  std::string log() const { return ReadFile(dir_ / "serve.err"); }
  std::string out() const { return ReadFile(dir_ / "serve.out"); }

  bool Exited() {
    if (exit_code_) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return true;
  }
  std::optional<int> WaitExit(milliseconds timeout) {
    if (!WaitFor([&] { return Exited(); }, timeout)) return std::nullopt;
    return exit_code_;
  }

  // serve's daemons by their process name (the kernel keeps 15 characters).
  std::vector<pid_t> Children(const std::string& comm) const {
    std::vector<pid_t> pids;
    std::istringstream in(RunCommand("pgrep -P " + std::to_string(pid_)));
    pid_t pid = 0;
    while (in >> pid) {
      if (Comm(pid) == comm) pids.push_back(pid);
    }
    return pids;
  }
  std::vector<pid_t> Workers() const { return Children("tandem-decode-w"); }
  std::vector<pid_t> Frontends() const { return Children("tandem-frontend"); }

  Json Health() const {
    HttpClient c(http_port_);
    return Json::parse(c.Request(http::verb::get, "/health").body, nullptr, false);
  }

 private:
  fs::path dir_;
  pid_t pid_ = 0;
  std::optional<int> exit_code_;
  int http_port_ = 0;
  int grpc_port_ = 0;
};

Json DemoChat(int max_tokens, bool stream = false) {
  return {{"model", "demo"},
          {"messages", {{{"role", "user"}, {"content", "Hello!"}}}},
          {"max_tokens", max_tokens},
          {"ignore_eos", true},
          {"stream", stream}};
}

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tandem_serve_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Temporary directories serve left in its TMPDIR.
  std::vector<std::string> LeftBehind() const {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_ / "tmp", ec)) {
      if (e.path().filename().string().starts_with("tandem-serve-")) {
        names.push_back(e.path().filename().string());
      }
    }
    return names;
  }

  fs::path dir_;
};

TEST_F(ServeTest, AKilledDaemonIsRestartedWhileTheOthersServe) {
  // Item 1: SIGKILL of one worker stopped the whole of serve (port 8000 refused within 0.5 s).
  // Item 14: a directory left by a serve that was killed is removed; this one leaves none.
  fs::create_directories(dir_ / "tmp" / "tandem-serve-999999999-abcdef");
  Serve serve(dir_, {"--workers", "2"});
  ASSERT_GT(serve.http_port(), 0);
  EXPECT_TRUE(LeftBehind().empty()) << "stale or own temporary directory left";
  const std::vector<pid_t> workers = serve.Workers();
  ASSERT_EQ(workers.size(), 2u);

  kill(workers[1], SIGKILL);
  // The survivor serves meanwhile: health stays ok, requests succeed (one sent to the dead
  // worker before its death is noticed goes to the survivor).
  for (int i = 0; i < 4; ++i) {
    HttpClient c(serve.http_port());
    EXPECT_EQ(c.Post("/v1/chat/completions", DemoChat(4)).status, 200);
    EXPECT_EQ(serve.Health()["status"], "ok");
  }
  // The worker comes back on its port, and the frontend routes to it again.
  EXPECT_TRUE(WaitFor(
      [&] {
        const std::vector<pid_t> now = serve.Workers();
        return now.size() == 2 && std::find(now.begin(), now.end(), workers[1]) == now.end() &&
               serve.Health()["workers_up"] == 2;
      },
      seconds(30)))
      << serve.log();

  // The frontend too: the same port answers again.
  const std::vector<pid_t> frontends = serve.Frontends();
  ASSERT_EQ(frontends.size(), 1u);
  kill(frontends[0], SIGKILL);
  EXPECT_TRUE(WaitFor(
      [&] { return HttpGet(serve.http_port(), "/health").ok() && serve.Frontends().size() == 1; },
      seconds(30)))
      << serve.log();
  EXPECT_NE(serve.Frontends()[0], frontends[0]);
  HttpClient c(serve.http_port());
  EXPECT_EQ(c.Post("/v1/chat/completions", DemoChat(4)).status, 200);
  EXPECT_FALSE(serve.Exited());

  const std::string log = serve.log();
  EXPECT_NE(log.find("daemon exited, restarting name=worker-1"), std::string::npos) << log;
  EXPECT_NE(log.find("daemon exited, restarting name=frontend"), std::string::npos) << log;
  // Item 11: each line of the merged output says which daemon wrote it.
  for (const char* who : {"[serve]", "[frontend]", "[worker-0]", "[worker-1]"}) {
    EXPECT_NE(log.find(who), std::string::npos) << who;
  }

  kill(serve.pid(), SIGTERM);
  EXPECT_EQ(serve.WaitExit(seconds(60)), 0) << serve.log();
  for (pid_t pid : serve.Workers()) ADD_FAILURE() << "daemon " << pid << " outlived serve";
  EXPECT_TRUE(LeftBehind().empty());
}

TEST_F(ServeTest, DrainDeadlineReachesEveryDaemonAndCutRequestsEndWithAnError) {
  // Item 5: --drain-timeout was not passed on (the frontend logged timeout_s=30), streams were
  // cut without a word, and serve reported a clean exit.
  Serve serve(dir_, {"--drain-timeout", "0"});
  ASSERT_GT(serve.http_port(), 0);
  for (pid_t pid : serve.Frontends()) {
    EXPECT_NE(CommandLine(pid).find("--drain-timeout 0"), std::string::npos) << CommandLine(pid);
  }
  for (pid_t pid : serve.Workers()) {
    EXPECT_NE(CommandLine(pid).find("--drain-timeout 0"), std::string::npos) << CommandLine(pid);
  }
  constexpr int kStreams = 3;
  std::vector<std::unique_ptr<OpenStream>> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(
        std::make_unique<OpenStream>(serve.http_port(), DemoChat(2000, /*stream=*/true)));
  }
  for (auto& s : streams) ASSERT_TRUE(s->WaitStarted());
  kill(serve.pid(), SIGTERM);
  for (auto& s : streams) {
    bool done = false;
    const std::string body = s->Finish();
    const std::vector<Json> events = SseEvents(body, &done);
    EXPECT_TRUE(done) << body.substr(0, 300);
    ASSERT_FALSE(events.empty());
    EXPECT_TRUE(events.back().contains("error")) << events.back().dump();
  }
  EXPECT_EQ(serve.WaitExit(seconds(60)), 1) << serve.log();
  const std::string log = serve.log();
  EXPECT_NE(log.find("requests_in_flight=" + std::to_string(kStreams) + " timeout_s=0"),
            std::string::npos)
      << log;
}

TEST_F(ServeTest, TheApiKeyNeverShowsOnACommandLine) {
  // Item 3: serve passes the key to the frontend through its environment, hides its own copy,
  // and the key guards gRPC as well as HTTP.
  Serve serve(dir_, {"--api-key", "open-sesame"});
  ASSERT_GT(serve.http_port(), 0);
  EXPECT_EQ(CommandLine(serve.pid()).find("open-sesame"), std::string::npos);
  for (pid_t pid : serve.Frontends()) {
    EXPECT_EQ(CommandLine(pid).find("open-sesame"), std::string::npos) << CommandLine(pid);
  }
  HttpClient c(serve.http_port());
  EXPECT_EQ(c.Post("/v1/chat/completions", DemoChat(2)).status, 401);
  EXPECT_EQ(
      c.Post("/v1/chat/completions", DemoChat(2), {{"Authorization", "bearer open-sesame"}}).status,
      200);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(serve.grpc_port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Inference::NewStub(channel);
  grpc::ClientContext ctx;
  v1::ListModelsResponse models;
  EXPECT_EQ(stub->ListModels(&ctx, v1::ListModelsRequest(), &models).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  kill(serve.pid(), SIGTERM);
  EXPECT_EQ(serve.WaitExit(seconds(60)), 0) << serve.log();
}

TEST_F(ServeTest, FlagsPassThroughAndBadOnesAreRefusedBeforeAnythingStarts) {
  // Item 12.
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--router-mode", "fastest"},
                                              std::vector<std::string>{"--backend", "tpu"},
                                              std::vector<std::string>{"--kv-cache-size", "lots"},
                                              std::vector<std::string>{"--log-format", "xml"}}) {
    const auto start = std::chrono::steady_clock::now();
    Serve serve(dir_, bad, {}, /*wait=*/false);
    EXPECT_NE(serve.WaitExit(seconds(10)), 0);
    EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
    const std::string log = serve.log();
    EXPECT_NE(log.find(bad[0]), std::string::npos) << log;
    EXPECT_EQ(log.find("starting workers"), std::string::npos) << log;
  }
  const std::string help = RunCommand(kTandem + " serve --help");
  for (const char* flag :
       {"--backend", "--kv-cache-size", "--max-num-seqs", "--host-cache-blocks",
        "--disk-cache-path", "--max-body-size", "--drain-timeout", "--max-restarts", "--log-format",
        "--api-key-file", "1GiB", "round-robin"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag << " in\n" << help;
  }
  for (const std::string daemon : {"tandem-frontend", "tandem-decode-worker"}) {
    const std::string daemon_help =
        RunCommand(std::string(TANDEM_BINARY_DIR) + "/bin/" + daemon + " --help");
    EXPECT_NE(daemon_help.find("--drain-timeout"), std::string::npos) << daemon_help;
    EXPECT_NE(daemon_help.find("--log-format"), std::string::npos) << daemon_help;
  }
  Serve serve(dir_, {"--max-num-seqs", "3", "--kv-cache-size", "48MiB", "--host-cache-blocks", "8",
                     "--max-body-size", "64KiB"});
  ASSERT_GT(serve.http_port(), 0);
  for (pid_t pid : serve.Workers()) {
    const std::string cmd = CommandLine(pid);
    for (const char* want :
         {"--max-num-seqs 3", "--kv-cache-size 48MiB", "--host-cache-blocks 8", "--backend cpu"}) {
      EXPECT_NE(cmd.find(want), std::string::npos) << want << " in " << cmd;
    }
  }
  HttpClient c(serve.http_port());
  EXPECT_EQ(c.Request(http::verb::post, "/v1/completions", std::string(100 << 10, 'x')).status,
            413);
  kill(serve.pid(), SIGTERM);
  EXPECT_EQ(serve.WaitExit(seconds(60)), 0) << serve.log();
}

// Issue 17: `serve --prefill-workers N --decode-workers M` starts both roles (mock workers,
// their KV transfer simulated); every prompt longer than --local-prefill-tokens is prefilled on a
// prefill worker and its KV pulled by a decode worker, and nothing stays leased.
TEST_F(ServeTest, ServesWithPrefillAndDecodeWorkers) {
  Serve serve(dir_, {"--backend", "mock", "--prefill-workers", "2", "--decode-workers", "2",
                     "--replicas", "1", "--mock-speedup", "4", "--local-prefill-tokens", "64"});
  ASSERT_GT(serve.http_port(), 0) << serve.log();
  ASSERT_TRUE(WaitFor([&] { return serve.Health()["workers_up"] == 4; }, seconds(30)));
  const Json ports = Json::parse(ReadFile(dir_ / "serve.json"));
  std::map<std::string, int> roles;
  for (const Json& w : ports["workers"]) ++roles[w["role"].get<std::string>()];
  EXPECT_EQ(roles["prefill"], 2);
  EXPECT_EQ(roles["decode"], 2);
  EXPECT_NE(ReadFile(dir_ / "serve.out").find("2 prefill and 2 decode workers"), std::string::npos);

  const std::string url = " --base-url http://127.0.0.1:" + std::to_string(serve.http_port());
  const fs::path out_json = dir_ / "pd.json";
  const std::string out = RunCommand(kTandem + " bench" + url +
                                     " --dataset random --input-len 256 --output-len 8"
                                     " --request-rate 20 --num-requests 20 --json-out " +
                                     out_json.string() + " 2>&1; echo rc=$?");
  ASSERT_NE(out.find("rc=0"), std::string::npos) << out;
  const Json r = Json::parse(ReadFile(out_json));
  EXPECT_EQ(r["summary"]["completed"], 20);
  for (const Json& q : r["requests"]) EXPECT_EQ(q["output_tokens"], 8);
  auto metrics = HttpGet(serve.http_port(), "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(MetricValue(*metrics, "tandem_frontend_prefill_total{path=\"remote\"}"), 20)
      << *metrics;
  double pulled = 0;
  for (const Json& w : ports["workers"]) {
    auto m = HttpGet(w["metrics_port"].get<int>(), "/metrics");
    ASSERT_TRUE(m.ok());
    if (w["role"] == "decode") {
      pulled += MetricValue(*m, "tandem_worker_kv_pulls_total{outcome=\"pulled\"}");
    } else {
      EXPECT_TRUE(WaitFor(
          [&] {
            auto again = HttpGet(w["metrics_port"].get<int>(), "/metrics");
            return again.ok() && MetricValue(*again, "tandem_worker_kv_leases") == 0;
          },
          seconds(10)));
    }
  }
  EXPECT_EQ(pulled, 20);
  kill(serve.pid(), SIGTERM);
  EXPECT_EQ(serve.WaitExit(seconds(60)), 0) << serve.log();
}

// Issue 15: `tandem bench` against `tandem serve --backend mock`, end to end: processes of several
// mock workers behind the real frontend, random and trace workloads, the server-reported slip, a
// sweep, and a server that is gone.
TEST_F(ServeTest, BenchDrivesAMockClusterEndToEnd) {
  Serve serve(dir_, {"--backend", "mock", "--workers", "6", "--replicas", "3", "--mock-speedup",
                     "4", "--router-mode", "round-robin"});
  ASSERT_GT(serve.http_port(), 0) << serve.log();
  EXPECT_EQ(serve.Workers().size(), 2u);  // 6 workers in 2 processes.
  ASSERT_TRUE(WaitFor([&] { return serve.Health()["workers_up"] == 6; }, seconds(30)));
  const std::string url = " --base-url http://127.0.0.1:" + std::to_string(serve.http_port());
  const fs::path random_json = dir_ / "random.json";
  const std::string random_out =
      RunCommand(kTandem + " bench" + url +
                 " --dataset random --input-len 128 --output-len 16 --request-rate 40"
                 " --num-requests 60 --json-out " +
                 random_json.string() + " 2>&1; echo rc=$?");
  ASSERT_NE(random_out.find("rc=0"), std::string::npos) << random_out;
  const Json r = Json::parse(ReadFile(random_json));
  EXPECT_EQ(r["summary"]["completed"], 60);
  EXPECT_EQ(r["summary"]["failed"], 0);
  for (const Json& q : r["requests"]) {
    EXPECT_EQ(q["output_tokens"], 16);
    EXPECT_EQ(q["prompt_tokens"], 128);
  }
  // A decode step of the H200 profile is ~5 ms; at --mock-speedup 4, ~1.2 ms.
  const double tpot = r["summary"]["tpot_ms"]["p50"];
  EXPECT_GT(tpot, 1.0);
  EXPECT_LT(tpot, 50.0);
  EXPECT_GT(r["summary"]["ttft_ms"]["p50"].get<double>(), 0.0);
  ASSERT_TRUE(r.contains("server")) << r.dump().substr(0, 500);
  EXPECT_GT(r["server"]["mock_expected_seconds"].get<double>(), 0.0);
  EXPECT_TRUE(r["server"]["valid"].is_boolean());
  EXPECT_NE(random_out.find("mock engine slip"), std::string::npos) << random_out;

  // A Mooncake trace whose 8 requests share their first 3 blocks: round-robin over 6 workers
  // sends the 7th and 8th where those blocks are cached, and usage says so.
  const fs::path trace = dir_ / "trace.jsonl";
  {
    std::ofstream out(trace);
    for (int i = 0; i < 8; ++i) {
      out << R"({"timestamp": )" << i * 50 << R"(, "input_length": 120, "output_length": 4, )"
          << R"("hash_ids": [0, 1, 2, )" << 100 + i << "]}\n";
    }
  }
  const fs::path trace_json = dir_ / "trace.json";
  const std::string trace_out =
      RunCommand(kTandem + " bench" + url + " --dataset mooncake --block-size 32 --path " +
                 trace.string() + " --json-out " + trace_json.string() + " 2>&1; echo rc=$?");
  ASSERT_NE(trace_out.find("rc=0"), std::string::npos) << trace_out;
  const Json t = Json::parse(ReadFile(trace_json));
  EXPECT_EQ(t["summary"]["completed"], 8);
  EXPECT_GT(t["summary"]["cached_prompt_tokens_fraction"].get<double>(), 0.0);

  // A sweep: one run per rate under "runs".
  const fs::path sweep_json = dir_ / "sweep.json";
  const std::string sweep_out = RunCommand(
      kTandem + " bench" + url +
      " --dataset random --input-len 32 --output-len 4 --num-requests 10 --request-rates 20,40"
      " --json-out " +
      sweep_json.string() + " 2>&1; echo rc=$?");
  ASSERT_NE(sweep_out.find("rc=0"), std::string::npos) << sweep_out;
  const Json sweep = Json::parse(ReadFile(sweep_json));
  ASSERT_EQ(sweep["runs"].size(), 2u);
  EXPECT_EQ(sweep["runs"][1]["summary"]["completed"], 10);

  kill(serve.pid(), SIGTERM);
  EXPECT_EQ(serve.WaitExit(seconds(60)), 0) << serve.log();
  // The server gone: every request fails as a connection error, counted, exit 1, and the report
  // is still written.
  const fs::path down_json = dir_ / "down.json";
  const std::string down_out =
      RunCommand(kTandem + " bench" + url +
                 " --model demo --dataset random --input-len 8 --output-len 2 --num-requests 5"
                 " --json-out " +
                 down_json.string() + " 2>&1; echo rc=$?");
  EXPECT_NE(down_out.find("rc=1"), std::string::npos) << down_out;
  const Json down = Json::parse(ReadFile(down_json));
  EXPECT_EQ(down["summary"]["failed"], 5);
  EXPECT_EQ(down["errors"]["connect"], 5);
}

}  // namespace
}  // namespace tandem::testing
