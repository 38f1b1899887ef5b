#include "frontend/openai_api.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <random>
#include <utility>
#include <vector>

#include "common/api_key.h"
#include "frontend/openai_request.h"
#include "frontend/openai_response.h"

namespace tandem::frontend {

namespace {

using Json = nlohmann::json;

constexpr std::string_view kJson = "application/json";

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string RandomId(std::string_view prefix) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(prefix);
  for (int i = 0; i < 24; ++i) id += kHex[rng() & 15];
  return id;
}

// Answers one generation request over HTTP: SSE chunks as deltas arrive, or one JSON body at
// the end. Lives as the Generation's sink; runs on the session's strand.
class HttpResponder final : public GenerationSink {
 public:
  HttpResponder(std::shared_ptr<HttpSession> session, const OpenAiRequest& request,
                ResponseHeader header, std::string endpoint, const GenerationContext& context)
      : session_(std::move(session)),
        chat_(request.kind == ApiKind::kChat),
        stream_(request.stream),
        include_usage_(request.include_usage),
        logprobs_(request.logprobs),
        top_logprobs_(request.sampling.top_logprobs() > 0),
        header_(std::move(header)),
        endpoint_(std::move(endpoint)),
        context_(context) {}

  void OnDelta(GenerationDelta&& delta) override {
    if (!stream_) {
      text_ += delta.text;
      for (size_t i = 0; i < delta.tokens.size(); ++i) {
        tokens_.push_back(std::move(delta.tokens[i]));
        offsets_.push_back(delta.text_offsets[i]);
      }
      return;
    }
    StartStream();
    if (delta.text.empty() && !logprobs_) return;
    session_->SendEvent(SseEvent(chat_ ? ChatChunk(header_, Json{{"content", delta.text}}, nullptr,
                                                   Logprobs(delta), include_usage_)
                                       : CompletionChunk(header_, delta.text, nullptr,
                                                         Logprobs(delta), include_usage_)));
  }

  void OnFinish(const GenerationResult& result) override {
    if (!result.status.ok()) {
      const int status = HttpStatusFor(result.status.code());
      const std::string body = ErrorBody(result.status.message(), ErrorType(status), "", "");
      context_.metrics->CountRequest(endpoint_, status);
      if (started_) {  // Too late for a status: the error is the stream's last event.
        session_->SendEvent("data: " + body + "\n\n");
        session_->SendEvent("data: [DONE]\n\n");
        session_->EndEventStream();
      } else {
        session_->Reply(status, kJson, body);
      }
      return;
    }
    context_.metrics->CountRequest(endpoint_, 200);
    const char* reason = FinishReasonName(result.finish_reason);
    const Json usage =
        UsageJson(result.prompt_tokens, result.completion_tokens, result.cached_prompt_tokens);
    if (!stream_) {
      GenerationDelta all;
      all.tokens = std::move(tokens_);
      all.text_offsets = std::move(offsets_);
      const Json lp = Logprobs(all);
      session_->Reply(200, kJson,
                      JsonText(chat_ ? ChatCompletion(header_, text_, reason, lp, usage)
                                     : Completion(header_, text_, reason, lp, usage)));
      return;
    }
    StartStream();
    session_->SendEvent(SseEvent(chat_ ? ChatChunk(header_, Json::object(), reason, nullptr,
                                                   include_usage_)
                                       : CompletionChunk(header_, "", reason, nullptr,
                                                         include_usage_)));
    if (include_usage_) session_->SendEvent(SseEvent(UsageChunk(header_, chat_, usage)));
    session_->SendEvent("data: [DONE]\n\n");
    session_->EndEventStream();
  }

 private:
  void StartStream() {
    if (started_) return;
    started_ = true;
    session_->BeginEventStream();
    if (chat_) {
      session_->SendEvent(SseEvent(ChatChunk(header_, Json{{"role", "assistant"}, {"content", ""}},
                                             nullptr, nullptr, include_usage_)));
    }
  }

  Json Logprobs(const GenerationDelta& d) const {
    if (!logprobs_) return nullptr;
    const auto& tok = context_.model->tokenizer();
    return chat_ ? ChatLogprobs(tok, d.tokens)
                 : CompletionLogprobs(tok, d.tokens, d.text_offsets, top_logprobs_);
  }

  std::shared_ptr<HttpSession> session_;
  const bool chat_, stream_, include_usage_, logprobs_, top_logprobs_;
  const ResponseHeader header_;
  const std::string endpoint_;
  const GenerationContext context_;
  bool started_ = false;
  // Non-streaming: everything, for the one body at the end.
  std::string text_;
  std::vector<v1::GeneratedToken> tokens_;
  std::vector<size_t> offsets_;
};

}  // namespace

const char* ErrorType(int http_status) {
  switch (http_status) {
    case 401:
      return "authentication_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable_error";
    default:
      return http_status >= 500 ? "server_error" : "invalid_request_error";
  }
}

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kFailedPrecondition:
      return 400;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

OpenAiApi::OpenAiApi(const OpenAiApiOptions& options, const GenerationContext& context)
    : options_(options), context_(context), created_(UnixNow()) {}

void OpenAiApi::ReplyError(HttpSession& session, const std::string& endpoint, int status,
                           const std::string& message, const std::string& param,
                           const std::string& code) {
  context_.metrics->CountRequest(endpoint, status);
  session.Reply(status, kJson, ErrorBody(message, ErrorType(status), param, code));
}

void OpenAiApi::HandleUnreadable(int status, std::string message,
                                 std::shared_ptr<HttpSession> session) {
  ReplyError(*session, "unreadable", status, message);
}

Json OpenAiApi::ModelCard() const {
  Json card = {{"id", context_.model->name()},
               {"object", "model"},
               {"created", created_},
               {"owned_by", "tandem"}};
  if (auto info = context_.pool->ClusterInfo()) {
    card["max_model_len"] = info->max_model_len();
    card["vocab_size"] = info->vocab_size();  // What a load generator's token-id prompts need.
  }
  return card;
}

void OpenAiApi::Handle(HttpRequest&& request, std::shared_ptr<HttpSession> session) {
  std::string_view target(request.target().data(), request.target().size());
  const std::string path(target.substr(0, target.find('?')));
  const http::verb method = request.method();
  auto allow = [&](http::verb want) {
    // HEAD is GET without the body (the session leaves it out).
    if (method == want || (want == http::verb::get && method == http::verb::head)) return true;
    ReplyError(*session, path, 405,
               "method " + std::string(request.method_string()) + " is not allowed on " + path);
    return false;
  };
  if (path.starts_with("/v1/") && options_.api_key) {
    const auto auth = request[http::field::authorization];
    if (!BearerMatches(std::string_view(auth.data(), auth.size()), *options_.api_key)) {
      ReplyError(*session, path, 401, "invalid or missing API key (Authorization: Bearer ...)",
                 "", "invalid_api_key");
      return;
    }
  }
  if (path == "/v1/chat/completions" || path == "/v1/completions") {
    if (!allow(http::verb::post)) return;
    HandleGenerate(path == "/v1/chat/completions", request, std::move(session));
  } else if (path == "/v1/models") {
    if (!allow(http::verb::get)) return;
    context_.metrics->CountRequest(path, 200);
    session->Reply(200, kJson, JsonText(Json{{"object", "list"}, {"data", {ModelCard()}}}));
  } else if (path.starts_with("/v1/models/")) {
    if (!allow(http::verb::get)) return;
    const std::string id = path.substr(std::string_view("/v1/models/").size());
    if (id != context_.model->name()) {
      ReplyError(*session, path, 404,
                 "The model `" + id + "` does not exist (this server serves `" +
                     context_.model->name() + "`)",
                 "model", "model_not_found");
      return;
    }
    context_.metrics->CountRequest(path, 200);
    session->Reply(200, kJson, JsonText(ModelCard()));
  } else if (path == "/health") {
    if (!allow(http::verb::get)) return;
    // Ok while a worker that can take a request is up (prefill workers alone cannot).
    const size_t up = context_.pool->num_up();
    const int status = context_.pool->num_serving_up() > 0 && admitting_ ? 200 : 503;
    context_.metrics->CountRequest(path, status);
    session->Reply(status, kJson,
                   JsonText(Json{{"status", status == 200 ? "ok"
                                            : admitting_  ? "unavailable"
                                                          : "draining"},
                                 {"workers_up", up},
                                 {"workers", context_.pool->num_workers()},
                                 {"requests_in_flight", context_.pool->in_flight()}}));
  } else if (path == "/metrics") {
    if (!allow(http::verb::get)) return;
    context_.metrics->CountRequest(path, 200);
    context_.metrics->SetRefusedWorkers(context_.pool->refused_workers());
    context_.metrics->SetRouterState(
        context_.pool->router().indexed_blocks(), context_.pool->router().kv_event_lag(),
        context_.pool->kv_resubscriptions(), context_.pool->kv_snapshots());
    if (auto sim = context_.pool->simulation_totals()) {
      context_.metrics->SetMockTimes(sim->expected_seconds, sim->actual_seconds);
    }
    session->Reply(200, "text/plain; version=0.0.4; charset=utf-8",
                   context_.metrics->Serialize());
  } else {
    ReplyError(*session, path, 404, "no such endpoint: " + path);
  }
}

void OpenAiApi::HandleGenerate(bool chat, const HttpRequest& request,
                               std::shared_ptr<HttpSession> session) {
  const auto arrival = std::chrono::steady_clock::now();
  const std::string endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
  if (!admitting_) {
    ReplyError(*session, endpoint, 503, "the server is shutting down");
    return;
  }
  std::string param;
  auto parsed = ParseOpenAiRequest(chat ? ApiKind::kChat : ApiKind::kCompletion, request.body(),
                                   &param);
  if (!parsed.ok()) {
    ReplyError(*session, endpoint, 400, parsed.status().message(), param);
    return;
  }
  OpenAiRequest& req = *parsed;
  const ServedModel& model = *context_.model;
  if (!req.model.empty() && req.model != model.name()) {
    ReplyError(*session, endpoint, 404,
               "The model `" + req.model + "` does not exist (this server serves `" +
                   model.name() + "`)",
               "model", "model_not_found");
    return;
  }
  GenerationInput input;
  input.arrival = arrival;
  input.request_id = RandomId(chat ? "chatcmpl-" : "cmpl-");
  StatusOr<std::vector<int32_t>> ids =
      chat ? model.EncodeChat(req.messages, req.tools)
           : req.prompt_text ? model.EncodeText(*req.prompt_text)
                             : StatusOr<std::vector<int32_t>>(req.prompt_ids);
  if (!ids.ok()) {
    ReplyError(*session, endpoint, 400, ids.status().message(), chat ? "messages" : "prompt");
    return;
  }
  input.prompt_ids = std::move(ids).value();
  input.sampling = req.sampling;
  // OpenAI's default for completions is 16 tokens; chat runs to the end of the context.
  if (!chat && !input.sampling.has_max_tokens()) input.sampling.set_max_tokens(16);
  model.ApplyDefaults(&input.sampling);
  input.stop = req.stop;
  input.skip_special_tokens = req.skip_special_tokens;

  ResponseHeader header{input.request_id, UnixNow(), model.name()};
  auto responder = std::make_shared<HttpResponder>(session, req, std::move(header), endpoint,
                                                   context_);
  auto generation = Generation::Start(
      context_, std::move(input), [session](std::function<void()> fn) { session->Post(fn); },
      responder);
  if (!generation.ok()) {
    const int status = HttpStatusFor(generation.status().code());
    ReplyError(*session, endpoint, status, generation.status().message(),
               status == 400 ? (chat ? "messages" : "prompt") : "");
    return;
  }
  std::shared_ptr<Generation> g = std::move(generation).value();
  session->SetDisconnectHandler([this, g, endpoint] {
    spdlog::debug("client disconnected request_id={}", g->request_id());
    context_.metrics->CountRequest(endpoint, 499);
    g->Cancel();
  });
}

}  // namespace tandem::frontend
