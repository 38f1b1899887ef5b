#include "frontend_util.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace tandem::testing {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Json = nlohmann::json;

bool WriteTestModel(const fs::path& dir, int hidden_size, int layers) {
  const fs::path tokenizers = fs::path(TANDEM_SOURCE_DIR) / "../shared/data/tokenizers";
  if (!fs::exists(tokenizers / "qwen2")) return false;
  fs::create_directories(dir);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(tokenizers / "qwen2" / f, dir / f, fs::copy_options::overwrite_existing);
  }
  const Json cfg = {{"model_type", "qwen2"},       {"vocab_size", 151936},
                    {"hidden_size", hidden_size},  {"intermediate_size", 2 * hidden_size},
                    {"num_hidden_layers", layers}, {"num_attention_heads", 2},
                    {"num_key_value_heads", 1},    {"max_position_embeddings", 512},
                    {"rms_norm_eps", 1e-6},        {"rope_theta", 1000000.0},
                    {"tie_word_embeddings", true}, {"eos_token_id", 151645}};
  std::ofstream(dir / "config.json") << cfg.dump();
  return true;
}

HttpClient::HttpClient(int port) : socket_(io_) {
  beast::error_code ec;
  socket_.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)}, ec);
  EXPECT_FALSE(ec) << ec.message();
}

HttpResult HttpClient::Request(http::verb method, const std::string& target,
                               const std::string& body,
                               const std::map<std::string, std::string>& headers) {
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
  if (method == http::verb::head) parser.skip(true);
  http::read(socket_, buffer_, parser, ec);
  if (ec) return {};
  const auto& res = parser.get();
  HttpResult out{static_cast<int>(res.result_int()),
                 res.body(),
                 std::string(res[http::field::content_type]),
                 {}};
  for (const auto& field : res) {
    out.headers[std::string(field.name_string())] = std::string(field.value());
  }
  return out;
}

HttpResult HttpClient::Post(const std::string& target, const Json& body,
                            const std::map<std::string, std::string>& headers) {
  return Request(http::verb::post, target, body.dump(), headers);
}

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

double Metric(int port, const std::string& sample) {
  HttpClient c(port);
  const HttpResult r = c.Request(boost::beast::http::verb::get, "/metrics");
  return r.status == 200 ? MetricValue(r.body, sample) : -1;
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

OpenStream::OpenStream(int port, const Json& body, const std::string& path) : socket_(io_) {
  socket_.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)});
  const std::string text = body.dump();
  const std::string msg = "POST " + path +
                          " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          "Content-Length: " +
                          std::to_string(text.size()) + "\r\nConnection: close\r\n\r\n" + text;
  asio::write(socket_, asio::buffer(msg));
}

bool OpenStream::WaitStarted() {
  // The chat stream's first chunk has "content":"" (the role); wait for one with text.
  while (got_.find("\"content\":\"") == std::string::npos ||
         got_.find("\"content\":\"\"") == got_.rfind("\"content\":\"")) {
    if (!ReadSome()) return false;
  }
  return true;
}

std::string OpenStream::Finish() {
  while (ReadSome()) {
  }
  return got_;
}

bool OpenStream::ReadSome() {
  char buf[4096];
  beast::error_code ec;
  const size_t n = socket_.read_some(asio::buffer(buf), ec);
  got_.append(buf, n);
  return !ec;
}

Json ChatRequest(int max_tokens, bool stream) {
  return {
      {"model", kTestModelName},  {"messages", {{{"role", "user"}, {"content", "Say something."}}}},
      {"max_tokens", max_tokens}, {"temperature", 0},
      {"ignore_eos", true},       {"stream", stream}};
}

}  // namespace tandem::testing
