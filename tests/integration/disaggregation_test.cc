// Disaggregated serving (issue 17) with real daemons on 127.0.0.1: tandem-frontend over a
// tandem-prefill-worker and a tandem-decode-worker --role decode, KV pulled over UCX between the
// processes (random weights, the Qwen2 tokenizer from ../shared/data):
//   - greedy completions, streamed or not, equal those of one aggregated worker, and the
//     frontend counts how each prompt was prefilled (remote, or local when short);
//   - a client that leaves during a long remote prefill frees the prefill worker within 1 s
//     (mock workers whose simulated time runs slow, so that the prefill lasts seconds), and
//     prefill workers alone are not a healthy cluster.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon_process.h"
#include "frontend_util.h"
#include "tandem/transfer.h"

namespace tandem::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kPrefillWorkerBinary =
    std::string(TANDEM_BINARY_DIR) + "/bin/tandem-prefill-worker";

std::vector<int> Prompt(int len, int seed) {
  std::vector<int> p;
  for (int i = 0; i < len; ++i) p.push_back(1000 + (seed * 7919 + i * 131) % 50000);
  return p;
}

Json Completion(const std::vector<int>& prompt, int max_tokens, bool stream = false) {
  return Json{{"model", kTestModelName}, {"prompt", prompt},   {"max_tokens", max_tokens},
              {"temperature", 0},        {"ignore_eos", true}, {"stream", stream}};
}

std::unique_ptr<DaemonProcess> Start(const std::string& binary, std::vector<std::string> args) {
  args.insert(args.end(), {"--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"});
  auto d = DaemonProcess::Start(binary, std::move(args));
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? std::move(d).value() : nullptr;
}

// A frontend over `workers`, with prompts of at least `local_prefill_tokens` uncached tokens
// prefilled remotely; waits until every worker is up.
std::unique_ptr<DaemonProcess> StartFrontend(const fs::path& model,
                                             const std::vector<const DaemonProcess*>& workers,
                                             int local_prefill_tokens) {
  std::string list;
  for (const DaemonProcess* w : workers) list += (list.empty() ? "" : ",") + w->grpc_address();
  auto f = DaemonProcess::Start(
      FrontendBinary(), {"--model", model.string(), "--served-model-name", kTestModelName, "--port",
                         "0", "--grpc-port", "0", "--workers", list, "--local-prefill-tokens",
                         std::to_string(local_prefill_tokens)});
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return nullptr;
  EXPECT_TRUE(WaitForWorkersUp((*f)->metrics_port(), workers.size())) << (*f)->log();
  return std::move(f).value();
}

bool HaveUcx() {
  const std::vector<std::string> b = transfer::AvailableBackends();
  return std::find(b.begin(), b.end(), "ucx") != b.end();
}

class DisaggregatedServingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!HaveUcx()) return;
    model_dir_ = new fs::path(fs::temp_directory_path() /
                              ("tandem_disaggregation_test_" + std::to_string(getpid())));
    if (!WriteTestModel(*model_dir_, 64, 2)) return;
    const std::vector<std::string> model = {"--model", model_dir_->string(), "--weights",
                                            "random",  "--kv-cache-size",    "32MiB"};
    auto with = [&](std::vector<std::string> more) {
      more.insert(more.begin(), model.begin(), model.end());
      return more;
    };
    // The prefill worker computes prompts in chunks of 32 tokens: several per prompt.
    prefill_ =
        Start(kPrefillWorkerBinary, with({"--transfer", "ucx", "--max-num-batched-tokens", "32"}))
            .release();
    decode_ = Start(WorkerBinary(), with({"--role", "decode", "--transfer", "ucx"})).release();
    aggregated_ = Start(WorkerBinary(), with({})).release();
    // A decode worker started without --transfer: it cannot pull, so it recomputes.
    no_transfer_ = Start(WorkerBinary(), with({"--role", "decode"})).release();
    if (!prefill_ || !decode_ || !aggregated_ || !no_transfer_) return;
    pd_ = StartFrontend(*model_dir_, {prefill_, decode_}, 32).release();
    one_ = StartFrontend(*model_dir_, {aggregated_}, 32).release();
    cannot_pull_ = StartFrontend(*model_dir_, {prefill_, no_transfer_}, 32).release();
  }

  static void TearDownTestSuite() {
    for (DaemonProcess** d :
         {&pd_, &one_, &cannot_pull_, &prefill_, &decode_, &aggregated_, &no_transfer_}) {
      delete std::exchange(*d, nullptr);
    }
    if (model_dir_ == nullptr) return;
    fs::remove_all(*model_dir_);
    delete std::exchange(model_dir_, nullptr);
  }

  void SetUp() override {
    if (!HaveUcx()) GTEST_SKIP() << "built without UCX";
    if (model_dir_ == nullptr || !fs::exists(*model_dir_ / "config.json")) {
      GTEST_SKIP() << "../shared/data absent: no Qwen2 tokenizer";
    }
    ASSERT_TRUE(pd_ && one_ && cannot_pull_) << "the cluster did not start";
  }

  static Json Post(const DaemonProcess* frontend, const Json& body) {
    HttpClient c(frontend->metrics_port());
    const HttpResult r = c.Post("/v1/completions", body);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? Json::parse(r.body) : Json();
  }

  // The streamed text of a completion.
  static std::string Streamed(const DaemonProcess* frontend, const Json& body) {
    HttpClient c(frontend->metrics_port());
    const HttpResult r = c.Post("/v1/completions", body);
    EXPECT_EQ(r.status, 200) << r.body;
    bool done = false;
    std::string text;
    for (const Json& e : SseEvents(r.body, &done))
      text += e["choices"][0]["text"].get<std::string>();
    EXPECT_TRUE(done);
    return text;
  }

  static inline fs::path* model_dir_ = nullptr;
  static inline DaemonProcess* prefill_ = nullptr;
  static inline DaemonProcess* decode_ = nullptr;
  static inline DaemonProcess* aggregated_ = nullptr;
  static inline DaemonProcess* no_transfer_ = nullptr;
  static inline DaemonProcess* pd_ = nullptr;
  static inline DaemonProcess* one_ = nullptr;
  static inline DaemonProcess* cannot_pull_ = nullptr;
};

TEST_F(DisaggregatedServingTest, GreedyCompletionsEqualOneWorkersAndArePrefilledRemotely) {
  const int port = pd_->metrics_port();
  int remote = 0;
  for (int len : {40, 150, 300}) {
    SCOPED_TRACE("prompt of " + std::to_string(len));
    const std::vector<int> prompt = Prompt(len, len);
    const Json pd = Post(pd_, Completion(prompt, 16));
    const Json one = Post(one_, Completion(prompt, 16));
    ASSERT_FALSE(pd.is_null() || one.is_null());
    EXPECT_EQ(pd["choices"][0]["text"], one["choices"][0]["text"]);
    EXPECT_EQ(pd["usage"]["completion_tokens"], 16);
    EXPECT_EQ(pd["usage"]["prompt_tokens"], len);
    ++remote;
    // Streamed, with a salt-free prompt of its own: the same text chunk by chunk.
    const std::vector<int> other = Prompt(len, len + 1);
    EXPECT_EQ(Streamed(pd_, Completion(other, 12, true)),
              Streamed(one_, Completion(other, 12, true)));
    ++remote;
  }
  EXPECT_EQ(Metric(port, "tandem_frontend_prefill_total{path=\"remote\"}"), remote);
  // A prompt shorter than --local-prefill-tokens is prefilled by the decode worker.
  const std::vector<int> short_prompt = Prompt(20, 3);
  EXPECT_EQ(Post(pd_, Completion(short_prompt, 8))["choices"][0]["text"],
            Post(one_, Completion(short_prompt, 8))["choices"][0]["text"]);
  EXPECT_EQ(Metric(port, "tandem_frontend_prefill_total{path=\"local\"}"), 1);
  EXPECT_LT(Metric(port, "tandem_frontend_prefill_total{path=\"recomputed\"}"), 1);
  // The decode worker pulled every remote prompt's KV; nothing stays leased or running.
  EXPECT_TRUE(WaitFor(
      [&] {
        return Metric(decode_->metrics_port(),
                      "tandem_worker_kv_pulls_total{outcome=\"pulled\"}") == remote &&
               Metric(prefill_->metrics_port(), "tandem_worker_kv_leases") == 0 &&
               Metric(decode_->metrics_port(), "tandem_worker_active_requests") == 0;
      },
      seconds(10)));
  EXPECT_GT(Metric(decode_->metrics_port(), "tandem_worker_kv_pulled_bytes_total"), 0);
}

// A decode worker that cannot pull (no --transfer) recomputes the prompt: the client gets the
// same completion, and the frontend and the worker count it as recomputed.
TEST_F(DisaggregatedServingTest, ADecodeWorkerThatCannotPullRecomputesUnseen) {
  const std::vector<int> prompt = Prompt(200, 77);
  const Json got = Post(cannot_pull_, Completion(prompt, 10));
  const Json want = Post(one_, Completion(prompt, 10));
  ASSERT_FALSE(got.is_null() || want.is_null());
  EXPECT_EQ(got["choices"][0]["text"], want["choices"][0]["text"]);
  EXPECT_EQ(
      Metric(cannot_pull_->metrics_port(), "tandem_frontend_prefill_total{path=\"recomputed\"}"),
      1);
  EXPECT_TRUE(WaitFor(
      [&] {
        return Metric(no_transfer_->metrics_port(),
                      "tandem_worker_kv_pulls_total{outcome=\"recomputed\"}") == 1 &&
               Metric(prefill_->metrics_port(), "tandem_worker_kv_leases") == 0;
      },
      seconds(10)));
}

// Mock workers whose simulated time runs 50 times slower than real time: a 480-token prefill
// takes seconds. The client leaves during it; the prefill worker cancels it within 1 s.
TEST(DisaggregatedCancelTest, AClientLeavingDuringARemotePrefillFreesThePrefillWorkerInASecond) {
  const fs::path dir =
      fs::temp_directory_path() / ("tandem_disaggregation_cancel_" + std::to_string(getpid()));
  if (!WriteTestModel(dir)) GTEST_SKIP() << "../shared/data absent: no Qwen2 tokenizer";
  const std::vector<std::string> mock = {"--model",   dir.string(), "--weights",      "random",
                                         "--backend", "mock",       "--mock-speedup", "0.02"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), mock.begin(), mock.end());
    return more;
  };
  auto prefill = Start(kPrefillWorkerBinary, with({"--max-num-batched-tokens", "64"}));
  auto decode = Start(WorkerBinary(), with({"--role", "decode"}));
  ASSERT_TRUE(prefill && decode);
  auto frontend = StartFrontend(dir, {prefill.get(), decode.get()}, 32);
  ASSERT_TRUE(frontend);
  {
    OpenStream stream(frontend->metrics_port(), Completion(Prompt(480, 9), 8, true),
                      "/v1/completions");
    // The prefill worker has it.
    ASSERT_TRUE(WaitFor(
        [&] { return Metric(prefill->metrics_port(), "tandem_worker_active_requests") == 1; },
        seconds(10)));
    std::this_thread::sleep_for(milliseconds(200));
    EXPECT_EQ(Metric(prefill->metrics_port(), "tandem_worker_requests_total{status=\"length\"}"), 0)
        << "the prefill ended before the client left";
  }  // The client leaves.
  const auto left = Clock::now();
  ASSERT_TRUE(WaitFor(
      [&] {
        return Metric(prefill->metrics_port(),
                      "tandem_worker_requests_total{status=\"cancelled\"}") == 1;
      },
      seconds(10)))
      << frontend->log();
  const double seconds_to_cancel = std::chrono::duration<double>(Clock::now() - left).count();
  RecordProperty("seconds_to_cancel", std::to_string(seconds_to_cancel));
  std::printf("the prefill worker cancelled %.3f s after the client left\n", seconds_to_cancel);
  EXPECT_LT(seconds_to_cancel, 1.0);
  EXPECT_EQ(Metric(decode->metrics_port(), "tandem_worker_requests_total{status=\"length\"}"), 0);

  // Prefill workers alone cannot serve: with the decode worker gone, health says so (503) while
  // the prefill worker is still up.
  decode->Signal(SIGKILL);
  ASSERT_TRUE(decode->WaitExit(seconds(10)).has_value());
  Json health;
  EXPECT_TRUE(WaitFor(
      [&] {
        HttpClient c(frontend->metrics_port());
        const HttpResult r = c.Request(boost::beast::http::verb::get, "/health");
        health = Json::parse(r.body, nullptr, false);
        return r.status == 503 && health.is_object() && health["workers_up"] == 1;
      },
      seconds(15)))
      << health.dump();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tandem::testing
