// What the frontend's integration tests share: a small test model (random weights of a tiny
// Qwen2 shape with the real Qwen2 tokenizer from ../shared/data), a synchronous HTTP client,
// SSE and Prometheus text parsing, and OpenAI error checks.
//
// Thread safety: an HttpClient is used by one thread; the free functions are thread-safe.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <utility>  // Before Asio: Boost 1.74's awaitable.hpp needs std::exchange.

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace tandem::testing {

// The daemons under test, as built next to the tests.
inline std::string WorkerBinary() {
  return std::string(TANDEM_BINARY_DIR) + "/bin/tandem-decode-worker";
}
inline std::string FrontendBinary() {
  return std::string(TANDEM_BINARY_DIR) + "/bin/tandem-frontend";
}

// Writes the test model (config.json, tokenizer files) into `dir`; false when ../shared/data is
// absent (the caller skips). A larger hidden size and more layers make each step slower (tests
// that need streams to outlast something).
bool WriteTestModel(const std::filesystem::path& dir, int hidden_size = 32, int layers = 1);
inline constexpr char kTestModelName[] = "qwen-test";

struct HttpResult {
  int status = 0;  // 0: the request failed on the wire.
  std::string body;
  std::string content_type;
  std::map<std::string, std::string> headers;
};

// A small synchronous HTTP/1.1 client (one keep-alive connection).
class HttpClient {
 public:
  explicit HttpClient(int port);
  HttpResult Request(boost::beast::http::verb method, const std::string& target,
                     const std::string& body = "",
                     const std::map<std::string, std::string>& headers = {});
  HttpResult Post(const std::string& target, const nlohmann::json& body,
                  const std::map<std::string, std::string>& headers = {});

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

// The JSON payloads of an SSE body, "[DONE]" excluded (done set when it was seen).
std::vector<nlohmann::json> SseEvents(const std::string& body, bool* done);

// The value of one sample (`name{labels}` exactly as exposed), or -1 when absent.
double MetricValue(const std::string& text, const std::string& sample);
// The sample as GET http://127.0.0.1:port/metrics shows it now; -1 when absent or unreachable.
double Metric(int port, const std::string& sample);

// Checks an OpenAI error object with `status`.
void ExpectError(const HttpResult& r, int status, const std::string& what);

// A streaming request on a connection of its own: sent at construction, read until its first
// generated text by WaitStarted, and to the server's close by Finish.
class OpenStream {
 public:
  OpenStream(int port, const nlohmann::json& body,
             const std::string& path = "/v1/chat/completions");
  // Reads until a chunk with generated text arrived (the request runs on its worker); false when
  // the connection ended first.
  bool WaitStarted();
  // Everything up to the server's close.
  std::string Finish();

 private:
  bool ReadSome();

  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  std::string got_;
};

// A chat request for the test model.
nlohmann::json ChatRequest(int max_tokens, bool stream = false);

}  // namespace tandem::testing
