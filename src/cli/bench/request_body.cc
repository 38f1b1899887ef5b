#include "cli/bench/request_body.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <vector>

namespace tandem::bench {
namespace {

// A JSON string literal; invalid UTF-8 in a trace is replaced rather than refused.
void AppendJsonString(std::string_view text, std::string* out) {
  *out += nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void AppendInt(int64_t value, std::string* out) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  out->append(buf, end);
}

}  // namespace

StatusOr<Endpoint> ParseEndpoint(std::string_view name) {
  if (name == "completions") return Endpoint::kCompletions;
  if (name == "chat") return Endpoint::kChat;
  return InvalidArgumentError("--endpoint: '" + std::string(name) +
                              "' is not one of completions, chat");
}

std::string_view EndpointPath(Endpoint endpoint) {
  return endpoint == Endpoint::kChat ? "/chat/completions" : "/completions";
}

bool CanSend(const RequestSpec& spec, Endpoint endpoint) {
  return endpoint == Endpoint::kCompletions || !spec.text.empty();
}

std::string RequestBody(const RequestSpec& spec, uint64_t index, const BodyOptions& options) {
  std::string body;
  body.reserve(128 + spec.text.size() + (spec.text.empty() ? 7 * spec.input_len : 0));
  body += "{\"model\":";
  AppendJsonString(options.model, &body);
  if (options.endpoint == Endpoint::kChat) {
    body += ",\"messages\":[{\"role\":\"user\",\"content\":";
    AppendJsonString(spec.text, &body);
    body += "}]";
  } else if (!spec.text.empty()) {
    body += ",\"prompt\":";
    AppendJsonString(spec.text, &body);
  } else {
    std::vector<int32_t> ids;
    ids.reserve(spec.input_len);
    options.tokens.AppendPrompt(spec, index, options.block_size, &ids);
    body += ",\"prompt\":[";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) body += ',';
      AppendInt(ids[i], &body);
    }
    body += ']';
  }
  body += ",\"max_tokens\":";
  AppendInt(spec.output_len, &body);
  body += ",\"ignore_eos\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
  return body;
}

std::string HttpRequest(std::string_view path, std::string_view host_header,
                        std::string_view api_key, std::string_view body) {
  std::string out;
  out.reserve(256 + body.size());
  out += body.empty() ? "GET " : "POST ";
  out += path;
  out += " HTTP/1.1\r\nHost: ";
  out += host_header;
  out += "\r\nAccept: text/event-stream, application/json\r\n";
  if (!api_key.empty()) {
    out += "Authorization: Bearer ";
    out += api_key;
    out += "\r\n";
  }
  if (!body.empty()) {
    out += "Content-Type: application/json\r\nContent-Length: ";
    AppendInt(static_cast<int64_t>(body.size()), &out);
    out += "\r\n";
  }
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace tandem::bench
