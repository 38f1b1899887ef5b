// tandem-frontend against two real tandem-decode-worker daemons (random weights, the Qwen2
// tokenizer from ../shared/data) on 127.0.0.1 with ephemeral ports: the OpenAI HTTP API
// (streaming and not, chat and completions, stop strings, logprobs), every error status followed
// by a request that succeeds, client disconnects freeing the worker's blocks, the API key, no
// worker (503), SIGTERM draining a stream, and the gRPC Inference service.
#include <signal.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "daemon_process.h"
#include "frontend_util.h"
#include "tandem/v1/inference.grpc.pb.h"

namespace tandem::testing {
namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kWorker = std::string(TANDEM_BINARY_DIR) + "/bin/tandem-decode-worker";
const std::string kFrontend = std::string(TANDEM_BINARY_DIR) + "/bin/tandem-frontend";
constexpr const char* kModelName = kTestModelName;

Json Chat(int max_tokens, bool stream = false) { return ChatRequest(max_tokens, stream); }

class FrontendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new fs::path(fs::temp_directory_path() /
                              ("tandem_frontend_test_" + std::to_string(getpid())));
    if (!WriteTestModel(*model_dir_)) return;
    for (int i = 0; i < 2; ++i) {
      auto w = DaemonProcess::Start(
          kWorker, {"--model", model_dir_->string(), "--weights", "random", "--kv-cache-size",
                    "32MiB", "--port", "0", "--metrics-port", "0"});
      ASSERT_TRUE(w.ok()) << w.status();
      workers_[i] = std::move(w).value().release();
    }
    // Round-robin: these tests place requests on both workers by turns (the kv router has its
    // own tests, kv_routing_test).
    frontend_ = StartFrontend({"--router-mode", "round-robin"}).release();
  }

  static void TearDownTestSuite() {
    delete frontend_;
    for (auto*& w : workers_) {
      delete w;
      w = nullptr;
    }
    if (model_dir_ != nullptr) fs::remove_all(*model_dir_);
    delete model_dir_;
    model_dir_ = nullptr;
    frontend_ = nullptr;
  }

  void SetUp() override {
    if (frontend_ == nullptr) GTEST_SKIP() << "../shared/data absent: no Qwen2 tokenizer";
  }

  static std::string WorkerList() {
    return workers_[0]->grpc_address() + "," + workers_[1]->grpc_address();
  }

  // Starts a frontend on the two workers and waits for GET /health to say 200.
  static std::unique_ptr<DaemonProcess> StartFrontend(std::vector<std::string> extra,
                                                      std::string workers = "",
                                                      bool wait_healthy = true,
                                                      DaemonOptions options = {}) {
    std::vector<std::string> args = {"--model",
                                     model_dir_->string(),
                                     "--served-model-name",
                                     kModelName,
                                     "--workers",
                                     workers.empty() ? WorkerList() : workers,
                                     "--port",
                                     "0",
                                     "--grpc-port",
                                     "0",
                                     "--drain-timeout-s",
                                     "20"};
    args.insert(args.end(), extra.begin(), extra.end());
    options.wait_serving = wait_healthy;
    auto f = DaemonProcess::Start(kFrontend, args, options);
    EXPECT_TRUE(f.ok()) << f.status();
    if (!f.ok()) return nullptr;
    const int port = (*f)->metrics_port();  // The HTTP port (metrics live there).
    if (wait_healthy) {
      EXPECT_TRUE(WaitFor([&] { return HttpGet(port, "/health").ok(); }, seconds(30)))
          << (*f)->log();
    }
    return std::move(f).value();
  }

  static int port() { return frontend_->metrics_port(); }

  static inline fs::path* model_dir_ = nullptr;
  static inline DaemonProcess* workers_[2] = {nullptr, nullptr};
  static inline DaemonProcess* frontend_ = nullptr;
};

TEST_F(FrontendTest, HealthAndModels) {
  HttpClient c(port());
  EXPECT_EQ(c.Request(http::verb::get, "/health").status, 200);
  const HttpResult models = c.Request(http::verb::get, "/v1/models");
  ASSERT_EQ(models.status, 200);
  const Json j = Json::parse(models.body);
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["data"][0]["id"], kModelName);
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_EQ(j["data"][0]["max_model_len"], 512);
  // Issue 15: a load generator sends token-id prompts inside the vocabulary.
  EXPECT_GT(j["data"][0]["vocab_size"].get<int>(), 1000);
  // Issue 14 item 9: the official client's models.retrieve, and HEAD /health.
  const HttpResult one = c.Request(http::verb::get, std::string("/v1/models/") + kModelName);
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(Json::parse(one.body), j["data"][0]);
  ExpectError(c.Request(http::verb::get, "/v1/models/gpt-4"), 404, "unknown model");
  const HttpResult head = c.Request(http::verb::head, "/health");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());
  EXPECT_EQ(c.Request(http::verb::get, "/health").status, 200);  // The connection still works.
  // Issue 14 item 8: gRPC health reports the server and the Inference service alike. It follows
  // the pool's report of a worker coming up, which can land just after GET /health (computed
  // when asked) saw the worker.
  EXPECT_TRUE(WaitFor(
      [&] {
        return frontend_->HealthStatus() == "SERVING" &&
               frontend_->HealthStatus("tandem.v1.Inference") == "SERVING";
      },
      seconds(5)))
      << frontend_->HealthStatus("tandem.v1.Inference");
  EXPECT_EQ(workers_[0]->HealthStatus("tandem.v1.Worker"), "SERVING");
}

TEST_F(FrontendTest, ChatCompletionStreamsWhatItAnswersWhole) {
  HttpClient c(port());
  const HttpResult whole = c.Post("/v1/chat/completions", Chat(12));
  ASSERT_EQ(whole.status, 200) << whole.body;
  const Json j = Json::parse(whole.body);
  EXPECT_TRUE(j["id"].get<std::string>().starts_with("chatcmpl-"));
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], kModelName);
  EXPECT_TRUE(j["created"].is_number_integer());
  const Json& choice = j["choices"][0];
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["message"]["role"], "assistant");
  EXPECT_EQ(choice["finish_reason"], "length");
  EXPECT_TRUE(choice["logprobs"].is_null());
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 5);
  EXPECT_EQ(j["usage"]["total_tokens"].get<int>(), j["usage"]["prompt_tokens"].get<int>() + 12);

  Json req = Chat(12, /*stream=*/true);
  req["stream_options"] = {{"include_usage", true}};
  const HttpResult streamed = c.Post("/v1/chat/completions", req);
  ASSERT_EQ(streamed.status, 200);
  EXPECT_EQ(streamed.content_type, "text/event-stream");
  bool done = false;
  const std::vector<Json> events = SseEvents(streamed.body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    EXPECT_EQ(events[i]["object"], "chat.completion.chunk");
    EXPECT_TRUE(events[i]["choices"][0]["finish_reason"].is_null());
    text += events[i]["choices"][0]["delta"].value("content", "");
  }
  EXPECT_EQ(text, choice["message"]["content"].get<std::string>());
  EXPECT_EQ(events[events.size() - 2]["choices"][0]["finish_reason"], "length");
  const Json& usage_chunk = events.back();
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"], j["usage"]);
}

TEST_F(FrontendTest, CompletionsTakeTextOrTokenIds) {
  HttpClient c(port());
  const Json base = {
      {"model", kModelName}, {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true}};
  Json text_req = base;
  text_req["prompt"] = "The capital of France is";
  const HttpResult r = c.Post("/v1/completions", text_req);
  ASSERT_EQ(r.status, 200) << r.body;
  const Json j = Json::parse(r.body);
  EXPECT_TRUE(j["id"].get<std::string>().starts_with("cmpl-"));
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["usage"]["completion_tokens"], 6);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);

  Json ids_req = base;
  ids_req["prompt"] = {785, 6722, 315, 9625, 374};  // "The capital of France is" in Qwen2.
  const HttpResult r2 = c.Post("/v1/completions", ids_req);
  ASSERT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(Json::parse(r2.body)["choices"][0]["text"], j["choices"][0]["text"]);

  Json streamed = text_req;
  streamed["stream"] = true;
  bool done = false;
  const auto events = SseEvents(c.Post("/v1/completions", streamed).body, &done);
  EXPECT_TRUE(done);
  std::string text;
  for (const Json& e : events) text += e["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, j["choices"][0]["text"].get<std::string>());
  EXPECT_EQ(events.back()["choices"][0]["finish_reason"], "length");
}

// Issue 15: usage says how much of the prompt the worker's prefix cache served
// (prompt_tokens_details.cached_tokens, as OpenAI reports it), streaming or not.
TEST_F(FrontendTest, UsageReportsCachedPromptTokens) {
  HttpClient c(port());
  Json req = {{"model", kModelName}, {"max_tokens", 2}, {"ignore_eos", true}};
  std::vector<int> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(1000 + 37 * i);  // 2 full blocks of 16.
  req["prompt"] = prompt;
  const HttpResult first = c.Post("/v1/completions", req);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(Json::parse(first.body)["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  // Round-robin over two workers: of the next two, one lands where the prompt is cached.
  int cached = 0;
  for (int i = 0; i < 2; ++i) {
    const HttpResult again = c.Post("/v1/completions", req);
    ASSERT_EQ(again.status, 200) << again.body;
    cached = std::max(
        cached,
        Json::parse(again.body)["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>());
  }
  EXPECT_EQ(cached, 32);
  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  int streamed_cached = 0;
  for (int i = 0; i < 2; ++i) {
    bool done = false;
    const auto events = SseEvents(c.Post("/v1/completions", req).body, &done);
    ASSERT_TRUE(done);
    streamed_cached =
        std::max(streamed_cached,
                 events.back()["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>());
  }
  EXPECT_EQ(streamed_cached, 32);
}

// Issue 16 (identity contract): a worker that computes another model (other weights) or cuts
// blocks differently shares no cached block with the cluster and hashes prompts differently; it
// is refused at registration with one log line and a metric, never mixed in.
TEST_F(FrontendTest, WorkersThatDifferFromTheClusterAreRefused) {
  std::vector<std::unique_ptr<DaemonProcess>> odd;
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--seed", "7"}, std::vector<std::string>{"--block-size", "32"}}) {
    std::vector<std::string> args = {"--model",         model_dir_->string(),
                                     "--weights",       "random",
                                     "--kv-cache-size", "32MiB",
                                     "--port",          "0",
                                     "--metrics-port",  "0"};
    args.insert(args.end(), flags.begin(), flags.end());
    auto w = DaemonProcess::Start(kWorker, args);
    ASSERT_TRUE(w.ok()) << w.status();
    odd.push_back(std::move(w).value());
  }
  auto frontend = StartFrontend({}, workers_[0]->grpc_address() + "," + odd[0]->grpc_address() +
                                        "," + odd[1]->grpc_address());
  ASSERT_NE(frontend, nullptr);
  const int p = frontend->metrics_port();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto m = HttpGet(p, "/metrics");
        return m.ok() && m->find("tandem_frontend_workers_refused 2") != std::string::npos;
      },
      seconds(10)))
      << frontend->log();
  const auto health_body = HttpGet(p, "/health");
  ASSERT_TRUE(health_body.ok());
  const Json health = Json::parse(*health_body);
  EXPECT_EQ(health["workers_up"], 1);
  const std::string log = frontend->log();
  EXPECT_NE(log.find("worker refused worker=" + odd[0]->grpc_address() +
                     " reason=\"model identity differs\""),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("worker refused worker=" + odd[1]->grpc_address() +
                     " reason=\"block size differs\""),
            std::string::npos)
      << log;
  // Once each, though the refused workers are probed again and again.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::string later = frontend->log();
  size_t refusals = 0;
  for (size_t at = later.find("worker refused"); at != std::string::npos;
       at = later.find("worker refused", at + 1)) {
    ++refusals;
  }
  EXPECT_EQ(refusals, 2u);
  // Every request goes to the worker of the cluster.
  HttpClient c(p);
  for (int i = 0; i < 4; ++i) {
    const HttpResult r = c.Post(
        "/v1/completions", Json{{"model", kModelName}, {"prompt", "Hello"}, {"max_tokens", 2}});
    EXPECT_EQ(r.status, 200) << r.body;
  }
}

TEST_F(FrontendTest, StopStringCutsTheTextStreamingOrNot) {
  HttpClient c(port());
  Json req = {{"model", kModelName},
              {"prompt", "Once upon a time"},
              {"max_tokens", 16},
              {"temperature", 0},
              {"ignore_eos", true}};
  const std::string full = Json::parse(c.Post("/v1/completions", req).body)["choices"][0]["text"];
  ASSERT_GE(full.size(), 8u);
  // A stop string from the middle of the greedy text (whole ASCII-or-not bytes are fine: the
  // matcher works on bytes of whole characters).
  const size_t at = full.size() / 2;
  size_t begin = at;
  while (begin > 0 && (static_cast<unsigned char>(full[begin]) & 0xC0) == 0x80) --begin;
  const std::string stop = full.substr(begin, 1);
  const std::string expected = full.substr(0, full.find(stop));
  req["stop"] = {stop, "never-appears-here"};
  const Json cut = Json::parse(c.Post("/v1/completions", req).body);
  EXPECT_EQ(cut["choices"][0]["text"], expected);
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
  req["stream"] = true;
  bool done = false;
  std::string text;
  const auto events = SseEvents(c.Post("/v1/completions", req).body, &done);
  for (const Json& e : events) text += e["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, expected);
  EXPECT_EQ(events.back()["choices"][0]["finish_reason"], "stop");
}

TEST_F(FrontendTest, LogprobsInBothFormats) {
  HttpClient c(port());
  Json chat = Chat(4);
  chat["logprobs"] = true;
  chat["top_logprobs"] = 3;
  const Json j = Json::parse(c.Post("/v1/chat/completions", chat).body);
  const Json& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 4u) << j.dump();
  for (const Json& t : content) {
    EXPECT_TRUE(t["token"].is_string());
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
    EXPECT_TRUE(t["bytes"].is_array());
    EXPECT_EQ(t["top_logprobs"].size(), 3u);
  }
  const Json comp = Json::parse(
      c.Post("/v1/completions",
             {{"prompt", "Hi"}, {"max_tokens", 3}, {"logprobs", 2}, {"ignore_eos", true}})
          .body);
  const Json& lp = comp["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), 3u) << comp.dump();
  EXPECT_EQ(lp["token_logprobs"].size(), 3u);
  EXPECT_EQ(lp["top_logprobs"].size(), 3u);
  EXPECT_EQ(lp["text_offset"][0], 0);
}

TEST_F(FrontendTest, EveryErrorHasItsStatusAndTheServerKeepsServing) {
  HttpClient c(port());
  const std::string chat = "/v1/chat/completions";
  Json too_long = Chat(500);
  Json bad_model = Chat(2);
  bad_model["model"] = "no-such-model";
  const std::vector<std::pair<std::pair<std::string, std::string>, int>> cases = {
      {{chat, "{not json"}, 400},
      {{chat, "[1, 2]"}, 400},
      {{chat, R"({"messages": "hi"})"}, 400},
      {{chat, R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})"}, 400},
      {{chat, R"({"messages": [{"role": "user", "content": "x"}], "top_p": 7})"}, 400},
      {{chat, R"({"messages": [{"role": "user", "content": "x"}], "n": 2})"}, 400},
      {{chat, R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})"}, 400},
      {{"/v1/completions", R"({"prompt": ["a", "b"]})"}, 400},
      {{"/v1/completions", R"({"prompt": [1, 999999999]})"}, 400},
      {{chat, bad_model.dump()}, 404},
      {{chat, too_long.dump()}, 400},
      {{"/v1/nothing", "{}"}, 404},
  };
  for (const auto& [req, status] : cases) {
    ExpectError(c.Request(http::verb::post, req.first, req.second), status, req.second);
    EXPECT_EQ(c.Post(chat, Chat(2)).status, 200) << "after " << req.second;
  }
  ExpectError(c.Request(http::verb::get, chat), 405, "GET on chat");
  EXPECT_EQ(c.Post(chat, Chat(2)).status, 200);
  // Over the 1 MiB body limit: 413, then the connection closes; a new one works.
  {
    HttpClient big(port());
    ExpectError(big.Request(http::verb::post, chat, std::string(2 << 20, 'x')), 413, "big");
  }
  HttpClient again(port());
  EXPECT_EQ(again.Post(chat, Chat(2)).status, 200);
  const auto metrics = HttpGet(port(), "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_GE(MetricValue(
                *metrics,
                R"(tandem_frontend_requests_total{endpoint="/v1/chat/completions",status="400"})"),
            8);
  EXPECT_GT(MetricValue(*metrics, "tandem_frontend_time_to_first_token_seconds_count"), 0);
  EXPECT_GT(MetricValue(*metrics, "tandem_frontend_generated_tokens_total"), 0);
  // Issue 14 item 14: queue time and end-to-end latency.
  EXPECT_GT(MetricValue(*metrics, "tandem_frontend_request_queue_time_seconds_count"), 0);
  EXPECT_GT(MetricValue(*metrics, "tandem_frontend_request_duration_seconds_count"), 0);
  // A request leaves the gauge when its worker stream closes, which can come just after the
  // client has read the response: wait for it with a deadline.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto m = HttpGet(port(), "/metrics");
        return m.ok() && MetricValue(*m, "tandem_frontend_active_requests") == 0;
      },
      seconds(10)));
}

TEST_F(FrontendTest, UnsupportedParametersAreRefusedNamingTheField) {
  // Issue 14 item 6: what tandem does not implement yet is a 400 naming the field, not silence.
  HttpClient c(port());
  const std::string chat = "/v1/chat/completions";
  const Json tools = Json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "parameters": {"type": "object", "properties": {}}}}])");
  auto with = [](Json body, const char* key, Json value) {
    body[key] = std::move(value);
    return body;
  };
  Json tools_required = with(Chat(2), "tools", tools);
  tools_required["tool_choice"] = "required";
  Json tools_named = with(Chat(2), "tools", tools);
  tools_named["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_weather"}}}};
  const Json completion = {{"model", kModelName}, {"prompt", "Hi"}, {"max_tokens", 2}};
  const std::vector<std::tuple<std::string, Json, std::string>> refused = {
      {chat, with(Chat(2), "response_format", {{"type", "json_object"}}), "response_format"},
      {chat,
       with(
           Chat(2), "response_format",
           {{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", Json::object()}}}}),
       "response_format"},
      {chat, tools_required, "tool_choice"},
      {chat, tools_named, "tool_choice"},
      {chat, with(Chat(2), "logit_bias", {{"1", 5}}), "logit_bias"},
      {chat, with(Chat(2), "logit_bias", "x"), "logit_bias"},
      {"/v1/completions", with(completion, "suffix", "!"), "suffix"},
      {"/v1/completions", with(completion, "best_of", 3), "best_of"},
      {chat,
       with(Chat(2), "messages", Json::parse(R"([{"role": "user", "content": [{"type": "image_url",
                "image_url": {"url": "http://x/y.png"}}]}])")),
       "messages"},
      {chat, with(Chat(2), "messages", Json::parse(R"([{"role": "wizard", "content": "x"}])")),
       "messages"},
  };
  for (const auto& [path, body, param] : refused) {
    const HttpResult r = c.Post(path, body);
    ExpectError(r, 400, body.dump());
    EXPECT_EQ(Json::parse(r.body)["error"]["param"], param) << r.body;
  }
  // What asks for nothing passes.
  for (const auto& [path, body] : std::vector<std::pair<std::string, Json>>{
           {chat, with(Chat(2), "response_format", {{"type", "text"}})},
           {chat, with(Chat(2), "logit_bias", Json::object())},
           {chat, with(with(Chat(2), "tools", tools), "tool_choice", "auto")},
           {"/v1/completions", with(with(completion, "best_of", 1), "suffix", "")}}) {
    EXPECT_EQ(c.Post(path, body).status, 200) << body.dump();
  }
  // Content as a list of text parts is the parts joined by newlines, not their JSON.
  auto greedy = [&](const Json& messages) {
    const HttpResult r = c.Post(chat, with(Chat(8), "messages", messages));
    EXPECT_EQ(r.status, 200) << r.body;
    return Json::parse(r.body)["choices"][0]["message"]["content"].get<std::string>();
  };
  const std::string joined = greedy(Json::parse(R"([{"role": "user", "content": "Say\nit."}])"));
  EXPECT_EQ(greedy(Json::parse(R"([{"role": "user", "content": [{"type": "text", "text": "Say"},
                                  {"type": "text", "text": "it."}]}])")),
            joined);
  // "developer" is the system role.
  EXPECT_EQ(greedy(Json::parse(R"([{"role": "developer", "content": "Be brief."},
                                  {"role": "user", "content": "Hi"}])")),
            greedy(Json::parse(R"([{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Hi"}])")));
  // The gRPC API refuses an unknown role too.
  auto stub = v1::Inference::NewStub(frontend_->channel());
  grpc::ClientContext ctx;
  v1::InferenceGenerateRequest req;
  v1::ChatMessage* m = req.mutable_chat()->add_messages();
  m->set_role("wizard");
  m->set_content("x");
  auto reader = stub->Generate(&ctx, req);
  v1::InferenceGenerateResponse r;
  while (reader->Read(&r)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(FrontendTest, ClientDisconnectMidStreamFreesTheBlocks) {
  for (int round = 0; round < 2; ++round) {  // Round-robin: one request on each worker.
    asio::io_context io;
    asio::ip::tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port())});
    Json req = Chat(400, /*stream=*/true);
    const std::string body = req.dump();
    const std::string msg =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
        "application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    asio::write(s, asio::buffer(msg));
    std::string got;
    char buf[4096];
    // Read until a content chunk arrived: the request is running on its worker.
    while (got.find("\"content\":\"") == std::string::npos ||
           std::count(got.begin(), got.end(), '\n') < 8) {
      beast::error_code ec;
      const size_t n = s.read_some(asio::buffer(buf), ec);
      ASSERT_FALSE(ec) << ec.message();
      got.append(buf, n);
    }
    s.close();
  }
  for (DaemonProcess* w : workers_) {
    std::string text;
    EXPECT_TRUE(WaitForMetrics(
        w->metrics_port(),
        [](const std::string& m) {
          return MetricValue(m, R"(tandem_kvcache_blocks{state="used",tier="device"})") == 0 &&
                 MetricValue(m, R"(tandem_worker_requests_total{status="cancelled"})") >= 1;
        },
        &text, seconds(20)))
        << text;
  }
  HttpClient c(port());
  EXPECT_EQ(c.Post("/v1/chat/completions", Chat(2)).status, 200);
}

// The whole command line of a process, arguments joined by spaces.
std::string CommandLine(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  std::replace(text.begin(), text.end(), '\0', ' ');
  return text;
}

// Generates a few tokens over gRPC with `authorization` metadata (none when empty).
grpc::Status GrpcGenerate(DaemonProcess& frontend, const std::string& authorization) {
  auto stub = v1::Inference::NewStub(frontend.channel());
  grpc::ClientContext ctx;
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  v1::InferenceGenerateRequest req;
  req.set_text("Hello");
  req.mutable_sampling()->set_max_tokens(2);
  auto reader = stub->Generate(&ctx, req);
  v1::InferenceGenerateResponse r;
  while (reader->Read(&r)) {
  }
  return reader->Finish();
}

grpc::Status GrpcListModels(DaemonProcess& frontend, const std::string& authorization) {
  auto stub = v1::Inference::NewStub(frontend.channel());
  grpc::ClientContext ctx;
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  v1::ListModelsResponse models;
  return stub->ListModels(&ctx, v1::ListModelsRequest(), &models);
}

TEST_F(FrontendTest, ApiKeyGuardsHttpAndGrpc) {
  // Issue 14 item 3: the key comes from the environment (as serve passes it), guards every
  // public gRPC method too, and takes the Bearer scheme in any case.
  DaemonOptions options;
  options.env = {{"TANDEM_API_KEY", "sesame"}};
  auto f = StartFrontend({}, "", true, options);
  ASSERT_NE(f, nullptr);
  HttpClient c(f->metrics_port());
  ExpectError(c.Post("/v1/chat/completions", Chat(2)), 401, "no key");
  ExpectError(c.Post("/v1/chat/completions", Chat(2), {{"Authorization", "Bearer wrong"}}), 401,
              "wrong key");
  ExpectError(c.Post("/v1/chat/completions", Chat(2), {{"Authorization", "Bearer sesam"}}), 401,
              "a prefix of the key");
  EXPECT_EQ(c.Post("/v1/chat/completions", Chat(2), {{"Authorization", "Bearer sesame"}}).status,
            200);
  EXPECT_EQ(c.Post("/v1/chat/completions", Chat(2), {{"Authorization", "bearer sesame"}}).status,
            200);
  EXPECT_EQ(c.Request(http::verb::get, "/health").status, 200);

  EXPECT_EQ(GrpcGenerate(*f, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GrpcGenerate(*f, "Bearer wrong").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GrpcListModels(*f, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(GrpcGenerate(*f, "Bearer sesame").ok());
  EXPECT_TRUE(GrpcGenerate(*f, "BEARER sesame").ok());
  EXPECT_TRUE(GrpcListModels(*f, "bearer sesame").ok());
  EXPECT_EQ(f->HealthStatus("tandem.v1.Inference"), "SERVING");  // Health stays open.

  // Issue 14 item 7: clients cannot grow /metrics with made-up paths, with a key or without.
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(c.Request(http::verb::get, "/v1/rand" + std::to_string(i)).status, 401);
    EXPECT_EQ(c.Request(http::verb::get, "/rand" + std::to_string(i)).status, 404);
    EXPECT_EQ(c.Request(http::verb::get, "/v1/rand" + std::to_string(i), "",
                        {{"Authorization", "Bearer sesame"}})
                  .status,
              404);
  }
  const auto metrics = HttpGet(f->metrics_port(), "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(metrics->find("rand"), std::string::npos);
  EXPECT_EQ(
      MetricValue(*metrics, R"(tandem_frontend_requests_total{endpoint="unknown",status="401"})"),
      40);
  EXPECT_EQ(
      MetricValue(*metrics, R"(tandem_frontend_requests_total{endpoint="unknown",status="404"})"),
      80);

  // A key given on the command line does not stay visible there (ps, /proc/PID/cmdline).
  auto g = StartFrontend({"--api-key", "open-sesame"});
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(CommandLine(g->pid()).find("open-sesame"), std::string::npos) << CommandLine(g->pid());
  HttpClient d(g->metrics_port());
  EXPECT_EQ(
      d.Post("/v1/chat/completions", Chat(2), {{"Authorization", "Bearer open-sesame"}}).status,
      200);
}

TEST_F(FrontendTest, NoWorkerIsServiceUnavailable) {
  // A port nothing listens on: our own frontend's HTTP port is not a gRPC worker either.
  auto f = StartFrontend({}, "127.0.0.1:1", /*wait_healthy=*/false);
  ASSERT_NE(f, nullptr);
  HttpClient c(f->metrics_port());
  EXPECT_EQ(c.Request(http::verb::get, "/health").status, 503);
  ExpectError(c.Post("/v1/chat/completions", Chat(2)), 503, "no worker");
  EXPECT_EQ(c.Request(http::verb::get, "/v1/models").status, 200);
  // Issue 14 item 8: gRPC health agrees with GET /health.
  EXPECT_EQ(f->HealthStatus(), "NOT_SERVING");
  EXPECT_EQ(f->HealthStatus("tandem.v1.Inference"), "NOT_SERVING");
  // Issue 14 item 11: an unreachable worker is a warning at start, once, its error quoted.
  EXPECT_TRUE(WaitFor([&] { return f->log().find("worker unreachable") != std::string::npos; },
                      seconds(10)));
  const std::string log = f->log();
  EXPECT_NE(log.find("worker unreachable worker=127.0.0.1:1 error=\""), std::string::npos) << log;
}

TEST_F(FrontendTest, SigtermLetsStreamsFinish) {
  // Issue 4: SIGTERM during 16 streaming requests lets them finish.
  constexpr int kStreams = 16;
  auto f = StartFrontend({});
  ASSERT_NE(f, nullptr);
  std::vector<std::thread> clients;
  std::vector<HttpResult> results(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&, i] {
      HttpClient c(f->metrics_port());
      results[i] = c.Post("/v1/chat/completions", Chat(200, /*stream=*/true));
    });
  }
  // Signal once every stream is under way.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto m = HttpGet(f->metrics_port(), "/metrics");
        return m.ok() && MetricValue(*m, "tandem_frontend_active_requests") == kStreams;
      },
      seconds(20)));
  f->Signal(SIGTERM);
  for (auto& t : clients) t.join();
  for (const HttpResult& r : results) {
    bool done = false;
    const auto events = SseEvents(r.body, &done);
    EXPECT_TRUE(done) << r.body;
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back()["choices"][0]["finish_reason"], "length");
  }
  EXPECT_EQ(f->WaitExit(seconds(20)), 0) << f->log();
}

TEST_F(FrontendTest, GrpcInferenceGeneratesAndListsModels) {
  auto stub = v1::Inference::NewStub(frontend_->channel());
  {
    grpc::ClientContext ctx;
    v1::ListModelsResponse models;
    ASSERT_TRUE(stub->ListModels(&ctx, v1::ListModelsRequest(), &models).ok());
    ASSERT_EQ(models.models_size(), 1);
    EXPECT_EQ(models.models(0).id(), kModelName);
    EXPECT_EQ(models.models(0).max_model_len(), 512);
  }
  v1::InferenceGenerateRequest req;
  req.set_text("The capital of France is");
  req.mutable_sampling()->set_temperature(0);
  req.mutable_sampling()->set_max_tokens(6);
  req.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, req);
  v1::InferenceGenerateResponse r;
  std::string text;
  int tokens = 0;
  bool finished = false;
  while (reader->Read(&r)) {
    text += r.text();
    tokens += r.tokens_size();
    if (r.finished()) {
      finished = true;
      EXPECT_EQ(r.finish_reason(), v1::FINISH_REASON_LENGTH);
      EXPECT_EQ(r.usage().prompt_tokens(), 5);
      EXPECT_EQ(r.usage().completion_tokens(), 6);
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(finished);
  EXPECT_EQ(tokens, 6);
  // The same as the HTTP API's greedy completion.
  HttpClient c(port());
  const Json j = Json::parse(c.Post("/v1/completions", {{"prompt", "The capital of France is"},
                                                        {"max_tokens", 6},
                                                        {"temperature", 0},
                                                        {"ignore_eos", true}})
                                 .body);
  EXPECT_EQ(text, j["choices"][0]["text"].get<std::string>());

  grpc::ClientContext bad_ctx;
  v1::InferenceGenerateRequest bad;
  bad.set_model("other");
  bad.set_text("x");
  auto bad_reader = stub->Generate(&bad_ctx, bad);
  while (bad_reader->Read(&r)) {
  }
  EXPECT_EQ(bad_reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace tandem::testing
