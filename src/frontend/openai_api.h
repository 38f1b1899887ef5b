// OpenAiApi: the HTTP endpoints of tandem-frontend (ARCHITECTURE §4): POST /v1/chat/completions,
// POST /v1/completions, GET /v1/models, GET /v1/models/{id}, GET /health, GET /metrics (and HEAD
// on the GET endpoints). It turns a request into a
// Generation and the Generation's deltas into OpenAI's response objects or SSE chunks. Every
// failure is OpenAI's error object with its HTTP status; the server keeps serving.
//
// Thread safety: Handle runs on each session's strand; the object is shared by all sessions and
// holds no mutable state of its own.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "frontend/generation.h"
#include "frontend/http_server.h"
#include "frontend/metrics.h"
#include "frontend/served_model.h"
#include "frontend/worker_pool.h"

namespace tandem::frontend {

struct OpenAiApiOptions {
  // When set, every /v1 request needs "Authorization: Bearer <api_key>" (scheme in any case).
  std::optional<std::string> api_key;
};

// OpenAI's error "type" for an HTTP status, and the status for a Status code.
const char* ErrorType(int http_status);
int HttpStatusFor(StatusCode code);

class OpenAiApi final : public HttpHandler {
 public:
  OpenAiApi(const OpenAiApiOptions& options, const GenerationContext& context);

  void Handle(HttpRequest&& request, std::shared_ptr<HttpSession> session) override;
  void HandleUnreadable(int status, std::string message,
                        std::shared_ptr<HttpSession> session) override;

  // Refuse generation requests (503) from now on: the server is draining.
  void StopAdmitting() { admitting_ = false; }

 private:
  nlohmann::json ModelCard() const;
  void HandleGenerate(bool chat, const HttpRequest& request, std::shared_ptr<HttpSession> session);
  void ReplyError(HttpSession& session, const std::string& endpoint, int status,
                  const std::string& message, const std::string& param = {},
                  const std::string& code = {});

  const OpenAiApiOptions options_;
  const GenerationContext context_;
  const int64_t created_;  // Start time, the "created" of /v1/models.
  std::atomic<bool> admitting_{true};
};

}  // namespace tandem::frontend
