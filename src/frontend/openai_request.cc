#include "frontend/openai_request.h"

#include <cmath>
#include <limits>

namespace tandem::frontend {

namespace {

using Json = nlohmann::ordered_json;

// Reads optional typed fields of the body, recording the first error.
class Fields {
 public:
  Fields(const Json& body, std::string* param) : body_(body), param_(param) {}

  const Json* Get(const char* name) {
    auto it = body_.find(name);
    if (it == body_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  Status Error(const char* name, const std::string& message) {
    if (param_ != nullptr) *param_ = name;
    return InvalidArgumentError(message);
  }

  // A number within [lo, hi] (and, with `open_lo`, above lo).
  Status Number(const char* name, double lo, double hi, bool open_lo, std::optional<double>* out) {
    const Json* v = Get(name);
    if (v == nullptr) return OkStatus();
    if (!v->is_number()) return Error(name, std::string("'") + name + "' must be a number");
    const double x = v->get<double>();
    if (!std::isfinite(x) || x < lo || x > hi || (open_lo && x == lo)) {
      return Error(name, std::string("'") + name + "' must be in " + (open_lo ? "(" : "[") +
                             Format(lo) + ", " + Format(hi) + "], got " + v->dump());
    }
    *out = x;
    return OkStatus();
  }

  Status Integer(const char* name, int64_t lo, int64_t hi, std::optional<int64_t>* out) {
    const Json* v = Get(name);
    if (v == nullptr) return OkStatus();
    if (!v->is_number_integer()) {
      return Error(name, std::string("'") + name + "' must be an integer");
    }
    // Large unsigned values do not fit int64; treat them as out of range.
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
      return Error(name, std::string("'") + name + "' is too large");
    }
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) {
      return Error(name, std::string("'") + name + "' must be in [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "], got " + std::to_string(x));
    }
    *out = x;
    return OkStatus();
  }

  Status Bool(const char* name, std::optional<bool>* out) {
    const Json* v = Get(name);
    if (v == nullptr) return OkStatus();
    if (!v->is_boolean()) return Error(name, std::string("'") + name + "' must be a boolean");
    *out = v->get<bool>();
    return OkStatus();
  }

 private:
  static std::string Format(double x) {
    std::string s = std::to_string(x);
    s.erase(s.find_last_not_of('0') + 1);
    if (s.back() == '.') s.pop_back();
    return s;
  }

  const Json& body_;
  std::string* param_;
};

#define TANDEM_PARSE_(expr)              \
  do {                                   \
    Status s_ = (expr);                  \
    if (!s_.ok()) return s_;             \
  } while (0)

Status ParseSampling(Fields& f, ApiKind kind, OpenAiRequest* r) {
  v1::SamplingParams& sp = r->sampling;
  std::optional<double> d;
  std::optional<int64_t> i;
  std::optional<bool> b;
  TANDEM_PARSE_(f.Number("temperature", 0, 2, false, &d));
  if (d) sp.set_temperature(static_cast<float>(*d));
  d.reset();
  TANDEM_PARSE_(f.Number("top_p", 0, 1, true, &d));
  if (d) sp.set_top_p(static_cast<float>(*d));
  d.reset();
  TANDEM_PARSE_(f.Integer("top_k", -1, std::numeric_limits<int32_t>::max(), &i));
  if (i) sp.set_top_k(static_cast<int32_t>(*i));
  i.reset();
  TANDEM_PARSE_(f.Number("min_p", 0, 1, false, &d));
  if (d) sp.set_min_p(static_cast<float>(*d));
  d.reset();
  TANDEM_PARSE_(f.Number("presence_penalty", -2, 2, false, &d));
  if (d) sp.set_presence_penalty(static_cast<float>(*d));
  d.reset();
  TANDEM_PARSE_(f.Number("frequency_penalty", -2, 2, false, &d));
  if (d) sp.set_frequency_penalty(static_cast<float>(*d));
  d.reset();
  TANDEM_PARSE_(f.Number("repetition_penalty", 0, 100, true, &d));
  if (d) sp.set_repetition_penalty(static_cast<float>(*d));
  d.reset();
  TANDEM_PARSE_(f.Integer("seed", std::numeric_limits<int64_t>::min(),
                          std::numeric_limits<int64_t>::max(), &i));
  if (i) sp.set_seed(static_cast<uint64_t>(*i));
  i.reset();
  constexpr int64_t kMaxTokens = std::numeric_limits<int32_t>::max();
  if (kind == ApiKind::kChat) {
    TANDEM_PARSE_(f.Integer("max_completion_tokens", 1, kMaxTokens, &i));
  }
  if (!i) TANDEM_PARSE_(f.Integer("max_tokens", 1, kMaxTokens, &i));
  if (i) sp.set_max_tokens(static_cast<int32_t>(*i));
  i.reset();
  TANDEM_PARSE_(f.Bool("ignore_eos", &b));
  sp.set_ignore_eos(b.value_or(false));
  b.reset();
  TANDEM_PARSE_(f.Integer("n", 1, std::numeric_limits<int32_t>::max(), &i));
  if (i && *i != 1) return f.Error("n", "'n' > 1 is not supported yet; send n separate requests");
  i.reset();
  // Logprobs: chat takes logprobs: bool + top_logprobs: 0..20; completions logprobs: 0..20.
  if (kind == ApiKind::kChat) {
    TANDEM_PARSE_(f.Bool("logprobs", &b));
    TANDEM_PARSE_(f.Integer("top_logprobs", 0, 20, &i));
    if (i && !b.value_or(false)) {
      return f.Error("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    }
    r->logprobs = b.value_or(false);
    sp.set_logprobs(r->logprobs);
    sp.set_top_logprobs(static_cast<int32_t>(i.value_or(0)));
  } else {
    TANDEM_PARSE_(f.Integer("logprobs", 0, 20, &i));
    r->logprobs = i.has_value();
    sp.set_logprobs(r->logprobs);
    sp.set_top_logprobs(static_cast<int32_t>(i.value_or(0)));
    b.reset();
    TANDEM_PARSE_(f.Bool("echo", &b));
    if (b.value_or(false)) return f.Error("echo", "'echo' is not supported yet");
  }
  i.reset();
  b.reset();
  TANDEM_PARSE_(f.Bool("skip_special_tokens", &b));
  r->skip_special_tokens = b.value_or(true);
  return OkStatus();
}

Status ParseStop(Fields& f, OpenAiRequest* r) {
  const Json* v = f.Get("stop");
  if (v == nullptr) return OkStatus();
  if (v->is_string()) {
    r->stop.push_back(v->get<std::string>());
    return OkStatus();
  }
  if (!v->is_array()) return f.Error("stop", "'stop' must be a string or a list of strings");
  for (const Json& s : *v) {
    if (!s.is_string()) return f.Error("stop", "'stop' must be a string or a list of strings");
    r->stop.push_back(s.get<std::string>());
  }
  return OkStatus();
}

Status ParseStream(Fields& f, OpenAiRequest* r) {
  std::optional<bool> b;
  TANDEM_PARSE_(f.Bool("stream", &b));
  r->stream = b.value_or(false);
  const Json* opts = f.Get("stream_options");
  if (opts == nullptr) return OkStatus();
  if (!r->stream) {
    return f.Error("stream_options", "'stream_options' is only allowed when 'stream' is true");
  }
  if (!opts->is_object()) return f.Error("stream_options", "'stream_options' must be an object");
  Fields o(*opts, nullptr);
  b.reset();
  Status s = o.Bool("include_usage", &b);
  if (!s.ok()) return f.Error("stream_options", "'stream_options.include_usage' must be a boolean");
  r->include_usage = b.value_or(false);
  return OkStatus();
}

// Content given as a list of parts: the text parts joined by newlines (as vLLM renders them for
// string templates); any other kind of part is refused, naming it.
Status JoinContentParts(Fields& f, const Json& parts, const std::string& where, std::string* out) {
  for (size_t j = 0; j < parts.size(); ++j) {
    const Json& part = parts[j];
    const std::string at = where + ".content[" + std::to_string(j) + "]";
    if (!part.is_object()) return f.Error("messages", at + " must be an object");
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) {
      return f.Error("messages", at + ".type must be a string");
    }
    if (*type != "text") {
      return f.Error("messages", at + ".type '" + type->get<std::string>() +
                                     "' is not supported: only text parts are (this model reads "
                                     "text only)");
    }
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) {
      return f.Error("messages", at + ".text must be a string");
    }
    if (j > 0) *out += '\n';
    *out += text->get<std::string>();
  }
  return OkStatus();
}

Status ParseMessages(Fields& f, OpenAiRequest* r) {
  const Json* m = f.Get("messages");
  if (m == nullptr) return f.Error("messages", "'messages' is required");
  if (!m->is_array() || m->empty()) {
    return f.Error("messages", "'messages' must be a non-empty list of messages");
  }
  r->messages = Json::array();
  for (size_t i = 0; i < m->size(); ++i) {
    const Json& msg = (*m)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) return f.Error("messages", where + " must be an object");
    auto role = msg.find("role");
    if (role == msg.end() || !role->is_string()) {
      return f.Error("messages", where + ".role must be a string");
    }
    StatusOr<std::string> mapped = ChatRole(role->get<std::string>());
    if (!mapped.ok()) return f.Error("messages", where + ".role: " + mapped.status().message());
    Json out = msg;
    out["role"] = *mapped;
    auto content = msg.find("content");
    if (content != msg.end() && !content->is_null() && !content->is_string()) {
      if (!content->is_array()) {
        return f.Error("messages", where + ".content must be a string or a list of parts");
      }
      std::string text;
      TANDEM_PARSE_(JoinContentParts(f, *content, where, &text));
      out["content"] = text;
    }
    r->messages.push_back(std::move(out));
  }
  if (const Json* tools = f.Get("tools")) {
    if (!tools->is_array()) return f.Error("tools", "'tools' must be a list");
    r->tools = *tools;
  }
  if (const Json* choice = f.Get("tool_choice")) {
    if (!choice->is_string() || (*choice != "auto" && *choice != "none")) {
      return f.Error("tool_choice",
                     "'tool_choice' " + choice->dump() +
                         " is not supported yet: tool calls are not parsed from the output, so "
                         "only \"auto\" and \"none\" are accepted");
    }
  }
  return OkStatus();
}

// Fields of OpenAI's API that tandem does not implement yet. Ignoring one would change the
// answer the client asked for without a word, so each is refused with a 400 naming it; values
// that ask for nothing (null, {}, false, 1, "text") pass.
Status RefuseUnsupported(Fields& f, ApiKind kind) {
  auto refuse = [&](const char* name, const std::string& why) {
    return f.Error(
        name, std::string("'") + name + "' is not supported yet" + (why.empty() ? "" : ": " + why));
  };
  if (const Json* v = f.Get("response_format")) {
    if (!v->is_object() || !v->contains("type") || !(*v)["type"].is_string()) {
      return f.Error("response_format", "'response_format' must be an object with a 'type'");
    }
    if ((*v)["type"] != "text") {
      return refuse("response_format", "type " + (*v)["type"].dump() +
                                           " (structured output); only \"text\" is accepted");
    }
  }
  if (const Json* v = f.Get("logit_bias")) {
    if (!v->is_object()) return f.Error("logit_bias", "'logit_bias' must be an object");
    if (!v->empty()) return refuse("logit_bias", "");
  }
  if (const Json* v = f.Get("functions"); v != nullptr && !(v->is_array() && v->empty())) {
    return refuse("functions", "");
  }
  if (const Json* v = f.Get("function_call");
      v != nullptr && !(v->is_string() && (*v == "none" || *v == "auto"))) {
    return refuse("function_call", "");
  }
  if (f.Get("prediction") != nullptr) return refuse("prediction", "");
  if (f.Get("audio") != nullptr) return refuse("audio", "");
  if (f.Get("web_search_options") != nullptr) return refuse("web_search_options", "");
  if (const Json* v = f.Get("modalities")) {
    if (!v->is_array()) return f.Error("modalities", "'modalities' must be a list");
    for (const Json& m : *v) {
      if (m != "text") return refuse("modalities", "only [\"text\"] is accepted");
    }
  }
  if (kind == ApiKind::kCompletion) {
    if (const Json* v = f.Get("suffix")) {
      if (!v->is_string()) return f.Error("suffix", "'suffix' must be a string");
      if (!v->get<std::string>().empty()) return refuse("suffix", "");
    }
    if (const Json* v = f.Get("best_of")) {
      if (!v->is_number_integer() || v->get<int64_t>() < 1) {
        return f.Error("best_of", "'best_of' must be a positive integer");
      }
      if (v->get<int64_t>() != 1) return refuse("best_of", "only 1 is accepted");
    }
  }
  return OkStatus();
}

Status ParsePrompt(Fields& f, OpenAiRequest* r) {
  const Json* p = f.Get("prompt");
  if (p == nullptr) return f.Error("prompt", "'prompt' is required");
  if (p->is_string()) {
    r->prompt_text = p->get<std::string>();
    return OkStatus();
  }
  if (!p->is_array() || p->empty()) {
    return f.Error("prompt", "'prompt' must be a string or a non-empty list of token ids");
  }
  for (const Json& t : *p) {
    if (t.is_string() || t.is_array()) {
      return f.Error("prompt", "a list of prompts is not supported yet; send one prompt per "
                               "request");
    }
    if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
        t.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return f.Error("prompt", "'prompt' token ids must be non-negative integers");
    }
    r->prompt_ids.push_back(t.get<int32_t>());
  }
  return OkStatus();
}

}  // namespace

StatusOr<std::string> ChatRole(std::string_view role) {
  if (role == "system" || role == "user" || role == "assistant" || role == "tool") {
    return std::string(role);
  }
  // OpenAI's newer name for system instructions; chat templates know only "system".
  if (role == "developer") return std::string("system");
  return InvalidArgumentError("unknown role '" + std::string(role) +
                              "' (system, developer, user, assistant or tool)");
}

StatusOr<OpenAiRequest> ParseOpenAiRequest(ApiKind kind, std::string_view body,
                                           std::string* param) {
  const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgumentError("the request body is not valid JSON");
  if (!j.is_object()) return InvalidArgumentError("the request body must be a JSON object");
  OpenAiRequest r;
  r.kind = kind;
  Fields f(j, param);
  if (const Json* model = f.Get("model")) {
    if (!model->is_string()) return f.Error("model", "'model' must be a string");
    r.model = model->get<std::string>();
  }
  TANDEM_PARSE_(kind == ApiKind::kChat ? ParseMessages(f, &r) : ParsePrompt(f, &r));
  TANDEM_PARSE_(RefuseUnsupported(f, kind));
  TANDEM_PARSE_(ParseSampling(f, kind, &r));
  TANDEM_PARSE_(ParseStop(f, &r));
  TANDEM_PARSE_(ParseStream(f, &r));
  return r;
}

}  // namespace tandem::frontend
