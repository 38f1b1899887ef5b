#include "frontend/inference_service.h"

#include <deque>
#include <memory>
#include <random>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/api_key.h"
#include "frontend/openai_request.h"

namespace tandem::frontend {

namespace {

namespace asio = boost::asio;
using Response = v1::InferenceGenerateResponse;

// One Generate call. gRPC needs the reactor alive until OnDone while the Generation's sink and
// the posted tasks may still hold it, so it is owned by shared_ptrs, one of them its own until
// OnDone. All state is touched only on `strand_`.
class GenerateReactor final : public grpc::ServerWriteReactor<Response>,
                              public GenerationSink,
                              public std::enable_shared_from_this<GenerateReactor> {
 public:
  explicit GenerateReactor(asio::io_context& io) : strand_(asio::make_strand(io)) {}

  // Starts the request (or fails it at once).
  void Start(const GenerationContext& context, const v1::InferenceGenerateRequest& request,
             bool admitting) {
    self_ = shared_from_this();
    asio::dispatch(strand_, [this, context, request, admitting, self = self_] {
      Status s = admitting ? Begin(context, request)
                           : UnavailableError("the server is shutting down");
      if (!s.ok()) FinishWith(s);
    });
  }

  void OnDelta(GenerationDelta&& delta) override {
    Response r;
    r.set_request_id(request_id_);
    r.set_text(std::move(delta.text));
    for (auto& t : delta.tokens) *r.add_tokens() = std::move(t);
    Enqueue(std::move(r));
  }

  void OnFinish(const GenerationResult& result) override {
    if (!result.status.ok()) {
      FinishWith(result.status);
      return;
    }
    Response r;
    r.set_request_id(request_id_);
    r.set_finished(true);
    r.set_finish_reason(result.finish_reason);
    r.mutable_usage()->set_prompt_tokens(result.prompt_tokens);
    r.mutable_usage()->set_completion_tokens(result.completion_tokens);
    r.mutable_usage()->set_total_tokens(result.prompt_tokens + result.completion_tokens);
    r.mutable_usage()->set_cached_prompt_tokens(result.cached_prompt_tokens);
    Enqueue(std::move(r));
    final_status_ = grpc::Status::OK;
    ending_ = true;
    Pump();
  }

 private:
  Status Begin(const GenerationContext& context, const v1::InferenceGenerateRequest& req) {
    const ServedModel& model = *context.model;
    if (!req.model().empty() && req.model() != model.name()) {
      return NotFoundError("model '" + req.model() + "' is not served here (this server serves '" +
                           model.name() + "')");
    }
    GenerationInput input;
    thread_local std::mt19937_64 rng(std::random_device{}());
    request_id_ = req.request_id().empty() ? "gen-" + std::to_string(rng()) : req.request_id();
    input.request_id = request_id_;
    StatusOr<std::vector<int32_t>> ids = InvalidArgumentError("no input: set text, token_ids or chat");
    switch (req.input_case()) {
      case v1::InferenceGenerateRequest::kText:
        ids = model.EncodeText(req.text());
        break;
      case v1::InferenceGenerateRequest::kTokenIds:
        ids = std::vector<int32_t>(req.token_ids().ids().begin(), req.token_ids().ids().end());
        break;
      case v1::InferenceGenerateRequest::kChat: {
        nlohmann::ordered_json messages = nlohmann::ordered_json::array();
        for (int i = 0; i < req.chat().messages_size(); ++i) {
          const v1::ChatMessage& m = req.chat().messages(i);
          StatusOr<std::string> role = ChatRole(m.role());
          if (!role.ok()) {
            return role.status().WithContext("chat.messages[" + std::to_string(i) + "].role");
          }
          messages.push_back({{"role", *role}, {"content", m.content()}});
        }
        nlohmann::ordered_json tools;
        if (!req.chat().tools_json().empty()) {
          tools = nlohmann::ordered_json::parse(req.chat().tools_json(), nullptr, false);
          if (!tools.is_array()) return InvalidArgumentError("chat.tools_json: not a JSON array");
        }
        ids = model.EncodeChat(messages, tools);
        break;
      }
      default:
        break;
    }
    if (!ids.ok()) return ids.status();
    input.prompt_ids = std::move(ids).value();
    input.sampling = req.sampling();
    if (input.sampling.has_max_tokens() && input.sampling.max_tokens() < 1) {
      return InvalidArgumentError("sampling.max_tokens must be at least 1");
    }
    model.ApplyDefaults(&input.sampling);
    input.stop.assign(req.stop().begin(), req.stop().end());
    input.skip_special_tokens = !req.keep_special_tokens();
    auto self = shared_from_this();
    auto g = Generation::Start(
        context, std::move(input),
        [self](std::function<void()> fn) { asio::post(self->strand_, std::move(fn)); }, self);
    if (!g.ok()) return g.status();
    generation_ = std::move(g).value();
    return OkStatus();
  }

  void Enqueue(Response r) {
    queue_.push_back(std::move(r));
    Pump();
  }

  void FinishWith(const Status& s) {
    if (ending_) return;
    ending_ = true;
    final_status_ = grpc::Status(static_cast<grpc::StatusCode>(s.code()), s.message());
    Pump();
  }

  void Pump() {
    if (writing_ || finish_called_) return;
    if (!queue_.empty()) {
      writing_ = true;
      current_ = std::move(queue_.front());
      queue_.pop_front();
      StartWrite(&current_);
      return;
    }
    if (ending_) {
      finish_called_ = true;
      Finish(final_status_);
    }
  }

  void OnWriteDone(bool ok) override {
    asio::post(strand_, [this, self = shared_from_this(), ok] {
      writing_ = false;
      if (!ok) {  // The client is gone.
        if (generation_) generation_->Cancel();
        queue_.clear();
        FinishWith(CancelledError("the client went away"));
        return;
      }
      Pump();
    });
  }

  void OnCancel() override {
    asio::post(strand_, [this, self = shared_from_this()] {
      if (generation_) generation_->Cancel();
      queue_.clear();
      FinishWith(CancelledError("cancelled by the client"));
    });
  }

  void OnDone() override {
    // Nothing touches the call after this; posted tasks may still hold the object.
    asio::post(strand_, [self = std::move(self_)] {});
  }

  asio::strand<asio::io_context::executor_type> strand_;
  std::shared_ptr<GenerateReactor> self_;  // Until OnDone.
  std::shared_ptr<Generation> generation_;
  std::string request_id_;
  std::deque<Response> queue_;
  Response current_;
  bool writing_ = false;
  bool ending_ = false;
  bool finish_called_ = false;
  grpc::Status final_status_;
};

// Answers a call refused before it starts. Finish in the constructor is allowed: gRPC keeps it
// until the call is bound.
class RejectReactor final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit RejectReactor(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::Status InferenceService::Authenticate(const grpc::CallbackServerContext& context) const {
  if (!api_key_) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it != metadata.end() &&
      BearerMatches(std::string_view(it->second.data(), it->second.size()), *api_key_)) {
    return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "invalid or missing API key (metadata authorization: Bearer ...)");
}

grpc::ServerWriteReactor<Response>* InferenceService::Generate(
    grpc::CallbackServerContext* context, const v1::InferenceGenerateRequest* request) {
  if (grpc::Status auth = Authenticate(*context); !auth.ok()) return new RejectReactor(auth);
  auto reactor = std::make_shared<GenerateReactor>(io_);
  reactor->Start(context_, *request, admitting_.load());
  return reactor.get();
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* context,
                                                       const v1::ListModelsRequest* request,
                                                       v1::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (grpc::Status auth = Authenticate(*context); !auth.ok()) {
    reactor->Finish(auth);
    return reactor;
  }
  v1::ModelCard* card = response->add_models();
  card->set_id(context_.model->name());
  if (auto info = context_.pool->ClusterInfo()) {
    card->set_max_model_len(info->max_model_len());
    card->set_vocab_size(info->vocab_size());
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace tandem::frontend
