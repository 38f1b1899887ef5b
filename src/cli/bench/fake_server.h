// A scripted OpenAI-style HTTP/1.1 server on 127.0.0.1 for tests and bench_generator: a script
// maps each request to a response whose body pieces go out at scripted delays (as HTTP chunks,
// so each arrives as the server sends it), with keep-alive. Delays of zero coalesce into one
// write, which makes it an instant server that a load generator cannot outrun on one core.
//
// Thread safety: Start runs the server on its own thread (epoll loop); the script is called on
// that thread. port() and requests() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tandem/status.h"

namespace tandem::bench {

struct FakeEvent {
  // After the previous event (the first: after the request arrived).
  std::chrono::microseconds delay{0};
  std::string bytes;
};

struct FakeResponse {
  int status = 200;
  std::string content_type = "text/event-stream";
  std::vector<FakeEvent> events;
  // false: one Content-Length body of all events, sent at once (delays ignored).
  bool chunked = true;
  // Close the connection after the last event without ending the body (a cut stream).
  bool cut = false;
};

struct FakeRequest {
  std::string method;
  std::string path;
  std::string headers;  // The raw header block.
  std::string body;
};

using FakeScript = std::function<FakeResponse(const FakeRequest&)>;

struct FakeServerOptions {
  // Answers every request; unset: 404 for everything.
  FakeScript script;
  // Pin the server thread to this CPU; -1 leaves it unpinned.
  int cpu = -1;
};

class FakeServer {
 public:
  static StatusOr<std::unique_ptr<FakeServer>> Start(FakeServerOptions options);
  ~FakeServer();  // Stops the loop and joins its thread.
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  int port() const { return port_; }
  // Requests answered so far.
  int64_t requests() const { return requests_.load(); }
  // Connections accepted so far (keep-alive reuse keeps this low).
  int64_t connections() const { return connections_.load(); }

 private:
  FakeServer() = default;
  void Loop();

  FakeServerOptions options_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int port_ = 0;
  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> connections_{0};
  std::thread thread_;
};

// A completion stream as an OpenAI server sends it: `tokens` chunks carrying text, the first
// `first` after the request and each next one `gap` later, then a usage chunk
// (prompt_tokens, completion_tokens and, when cached_tokens >= 0, prompt_tokens_details) and
// `data: [DONE]`. `chat` makes chat.completion.chunk deltas.
FakeResponse CompletionStream(int tokens, std::chrono::microseconds first,
                              std::chrono::microseconds gap, int prompt_tokens,
                              int cached_tokens = -1, bool chat = false);

// A whole JSON response (models list, errors).
FakeResponse JsonResponse(int status, std::string body);

// {"object":"list","data":[{"id": model, "object":"model", "vocab_size": vocab}]}.
std::string ModelsJson(const std::string& model, int vocab_size);

// A loopback port nothing listens on (bound, read back and closed), for "server down" tests.
int ClosedLoopbackPort();

}  // namespace tandem::bench
