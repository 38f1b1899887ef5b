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
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "daemon_process.h"
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
const fs::path kTokenizers = fs::path(TANDEM_SOURCE_DIR) / "../shared/data/tokenizers";
constexpr char kModelName[] = "qwen-test";

struct HttpResult {
  int status = 0;
  std::string body;
  std::string content_type;
};

// A small synchronous HTTP/1.1 client (one keep-alive connection).
class HttpClient {
 public:
  explicit HttpClient(int port) : socket_(io_) {
    beast::error_code ec;
    socket_.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)}, ec);
    EXPECT_FALSE(ec) << ec.message();
  }

  HttpResult Request(http::verb method, const std::string& target, const std::string& body = "",
                     const std::map<std::string, std::string>& headers = {}) {
    http::request<http::string_body> req(method, target, 11);
    req.set(http::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) req.set(k, v);
    if (method == http::verb::post) req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    beast::error_code ec;
    http::write(socket_, req, ec);
    if (ec) return {};
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(socket_, buffer_, parser, ec);
    if (ec) return {};
    const auto& res = parser.get();
    return {res.result_int(), res.body(), std::string(res[http::field::content_type])};
  }
  HttpResult Post(const std::string& target, const Json& body) {
    return Request(http::verb::post, target, body.dump());
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  beast::flat_buffer buffer_;
};

// The JSON payloads of an SSE body, "[DONE]" excluded (done set when it was last).
std::vector<Json> SseEvents(const std::string& body, bool* done) {
  std::vector<Json> events;
  *done = false;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    const std::string data = body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      *done = true;
      continue;
    }
    events.push_back(Json::parse(data, nullptr, false));
  }
  return events;
}

double MetricValue(const std::string& text, const std::string& sample) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
  }
  return -1;
}

void ExpectError(const HttpResult& r, int status, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(r.status, status) << r.body;
  const Json j = Json::parse(r.body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
  for (const char* key : {"message", "type", "param", "code"}) {
    EXPECT_TRUE(j["error"].contains(key)) << key << " in " << r.body;
  }
  EXPECT_TRUE(j["error"]["message"].is_string());
}

class FrontendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kTokenizers / "qwen2")) return;
    model_dir_ = new fs::path(fs::temp_directory_path() /
                              ("tandem_frontend_test_" + std::to_string(getpid())));
    fs::create_directories(*model_dir_);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(kTokenizers / "qwen2" / f, *model_dir_ / f,
                    fs::copy_options::overwrite_existing);
    }
    const Json cfg = {
        {"model_type", "qwen2"},    {"vocab_size", 151936},           {"hidden_size", 32},
        {"intermediate_size", 64},  {"num_hidden_layers", 1},         {"num_attention_heads", 2},
        {"num_key_value_heads", 1}, {"max_position_embeddings", 512}, {"rms_norm_eps", 1e-6},
        {"rope_theta", 1000000.0},  {"tie_word_embeddings", true},    {"eos_token_id", 151645}};
    std::ofstream(*model_dir_ / "config.json") << cfg.dump();
    for (int i = 0; i < 2; ++i) {
      auto w = DaemonProcess::Start(
          kWorker, {"--model", model_dir_->string(), "--weights", "random", "--kv-cache-size",
                    "32MiB", "--port", "0", "--metrics-port", "0"});
      ASSERT_TRUE(w.ok()) << w.status();
      workers_[i] = std::move(w).value().release();
    }
    frontend_ = StartFrontend({}).release();
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
                                                      bool wait_healthy = true) {
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
    auto f = DaemonProcess::Start(kFrontend, args);
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

  static Json Chat(int max_tokens, bool stream = false) {
    return {{"model", kModelName},
            {"messages", {{{"role", "user"}, {"content", "Say something."}}}},
            {"max_tokens", max_tokens},
            {"temperature", 0},
            {"ignore_eos", true},
            {"stream", stream}};
  }

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
  // A request leaves the gauge when its worker stream closes, which can come just after the
  // client has read the response: wait for it with a deadline.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto m = HttpGet(port(), "/metrics");
        return m.ok() && MetricValue(*m, "tandem_frontend_active_requests") == 0;
      },
      seconds(10)));
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
    EXPECT_TRUE(WaitFor(
        [&] {
          auto m = HttpGet(w->metrics_port(), "/metrics");
          text = m.ok() ? *m : "";
          return MetricValue(text, R"(tandem_kvcache_blocks{state="used",tier="device"})") == 0 &&
                 MetricValue(text, R"(tandem_worker_requests_total{status="cancelled"})") >= 1;
        },
        seconds(20)))
        << text;
  }
  HttpClient c(port());
  EXPECT_EQ(c.Post("/v1/chat/completions", Chat(2)).status, 200);
}

TEST_F(FrontendTest, ApiKeyGuardsTheV1Endpoints) {
  auto f = StartFrontend({"--api-key", "sesame"});
  ASSERT_NE(f, nullptr);
  HttpClient c(f->metrics_port());
  ExpectError(c.Post("/v1/chat/completions", Chat(2)), 401, "no key");
  ExpectError(c.Request(http::verb::post, "/v1/chat/completions", Chat(2).dump(),
                        {{"Authorization", "Bearer wrong"}}),
              401, "wrong key");
  EXPECT_EQ(c.Request(http::verb::post, "/v1/chat/completions", Chat(2).dump(),
                      {{"Authorization", "Bearer sesame"}})
                .status,
            200);
  EXPECT_EQ(c.Request(http::verb::get, "/health").status, 200);
}

TEST_F(FrontendTest, NoWorkerIsServiceUnavailable) {
  // A port nothing listens on: our own frontend's HTTP port is not a gRPC worker either.
  auto f = StartFrontend({}, "127.0.0.1:1", /*wait_healthy=*/false);
  ASSERT_NE(f, nullptr);
  HttpClient c(f->metrics_port());
  EXPECT_EQ(c.Request(http::verb::get, "/health").status, 503);
  ExpectError(c.Post("/v1/chat/completions", Chat(2)), 503, "no worker");
  EXPECT_EQ(c.Request(http::verb::get, "/v1/models").status, 200);
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
