#include "cli/bench/http_get.h"

#include "cli/bench/request_body.h"

namespace tandem::bench {
namespace {

constexpr size_t kMaxBody = 16u << 20;

// Collects one whole response.
class Collector final : public ResponseHandler {
 public:
  void OnHead(const HttpResponseParser& response, Clock::time_point) override {
    status = response.status();
  }
  bool OnBody(std::string_view bytes, Clock::time_point) override {
    body.append(bytes);
    return body.size() < kMaxBody;
  }
  void OnEnd(Clock::time_point) override { done = true; }
  void OnFailure(FailureKind, std::string_view message, Clock::time_point) override {
    done = true;
    error = message;
  }

  int status = 0;
  bool done = false;
  std::string body;
  std::string error;
};

}  // namespace

StatusOr<std::string> HttpGetBody(HttpClient& client, const ServerAddress& server,
                                  const std::string& path, const std::string& api_key) {
  const std::string url = "http://" + server.host_header + path;
  Collector collector;
  client.Send(HttpRequest(path, server.host_header, api_key, ""), &collector);
  // What is fetched is small: a server that has not sent it in 30 s is not going to serve a
  // benchmark.
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
  while (!collector.done && client.in_flight() > 0) {
    if (Clock::now() >= deadline) client.CancelAll("no answer within 30 s");
    client.Poll(std::chrono::milliseconds(100));
  }
  if (!collector.error.empty()) return UnavailableError("GET " + url + ": " + collector.error);
  if (!collector.done) return UnavailableError("GET " + url + ": response too large");
  if (collector.status != 200) {
    return UnavailableError("GET " + url + ": HTTP " + std::to_string(collector.status) + " " +
                            collector.body.substr(0, 200));
  }
  return std::move(collector.body);
}

}  // namespace tandem::bench
