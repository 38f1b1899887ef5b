#include "cli/bench/runner.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <memory>

#include "cli/bench/sse.h"
#include "cli/bench/stream_chunk.h"

namespace tandem::bench {

std::string HttpErrorKind(int status) {
  const char* family = status >= 500 && status < 600   ? "http_5xx:"
                       : status >= 400 && status < 500 ? "http_4xx:"
                                                       : "http_other:";
  return family + std::to_string(status);
}

namespace {

constexpr size_t kErrorBodyLimit = 4096;
constexpr auto kIdleWait = std::chrono::milliseconds(100);

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The message of an OpenAI error body ({"error": {"message": ...}}), else the body's start.
std::string ErrorBodyMessage(const std::string& body) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error")) {
    const nlohmann::json& e = j["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) {
      return e["message"].get<std::string>();
    }
    if (e.is_string()) return e.get<std::string>();
  }
  return body.substr(0, 200);
}

std::string_view FailureKindName(FailureKind kind) {
  switch (kind) {
    case FailureKind::kConnect:
      return kErrorConnect;
    case FailureKind::kTimeout:
      return kErrorTimeout;
    case FailureKind::kIncomplete:
      return kErrorIncomplete;
    case FailureKind::kProtocol:
      return kErrorProtocol;
    case FailureKind::kCancelled:
      return kErrorCancelled;
  }
  return kErrorIncomplete;
}

// Requests that ended so far, for the progress line.
struct Tally {
  size_t completed = 0;
  size_t failed = 0;
  int64_t output_tokens = 0;
};

// Records one request's stream into its RequestRecord.
class StreamRecorder final : public ResponseHandler {
 public:
  void Start(RequestRecord* record, int expected_output, Clock::time_point sent, Tally* tally) {
    record_ = record;
    sent_ = sent;
    tally_ = tally;
    record_->content_s.reserve(std::min(expected_output, 1 << 16) + 1);
  }

  void OnHead(const HttpResponseParser& response, Clock::time_point now) override {
    status_ = response.status();
    not_stream_ =
        status_ == 200 && response.content_type().find("text/event-stream") == std::string::npos;
    if (not_stream_) {
      SetError(kErrorStream,
               "expected an event stream, got Content-Type '" + response.content_type() + "'");
    }
  }

  bool OnBody(std::string_view bytes, Clock::time_point now) override {
    if (status_ != 200 || not_stream_) {
      const size_t room = kErrorBodyLimit - std::min(kErrorBodyLimit, error_body_.size());
      error_body_.append(bytes.substr(0, room));
      return true;
    }
    std::string_view data;
    while (sse_.Next(&bytes, &data)) {
      if (data == "[DONE]") {
        done_ = true;
        continue;
      }
      if (Status s = ScanStreamChunk(data, &chunk_); !s.ok()) {
        SetError(kErrorStream, s.message());
        Finish(now);
        return false;
      }
      if (chunk_.is_error) {
        SetError(kErrorStream, "server error event: " + std::string(chunk_.error_message));
      }
      if (chunk_.has_content) record_->content_s.push_back(Seconds(now - sent_));
      if (chunk_.completion_tokens >= 0) usage_output_ = chunk_.completion_tokens;
      if (chunk_.prompt_tokens >= 0) record_->prompt_tokens = chunk_.prompt_tokens;
      if (chunk_.cached_tokens >= 0) record_->cached_tokens = chunk_.cached_tokens;
    }
    return true;
  }

  void OnEnd(Clock::time_point now) override {
    if (status_ != 200) {
      SetError(HttpErrorKind(status_), ErrorBodyMessage(error_body_));
    } else if (not_stream_) {
      error_message_ += ": " + error_body_.substr(0, 200);
    } else if (!done_) {
      SetError(kErrorIncomplete,
               sse_.mid_event() ? "stream ended mid-event" : "stream ended without data: [DONE]");
    }
    Finish(now);
  }

  void OnFailure(FailureKind kind, std::string_view message, Clock::time_point now) override {
    error_kind_.clear();  // The transport's failure is what ended the request.
    SetError(FailureKindName(kind), std::string(message));
    Finish(now);
  }

 private:
  void SetError(std::string_view kind, std::string message) {
    if (!error_kind_.empty()) return;  // The first cause wins.
    error_kind_ = kind;
    error_message_ = std::move(message);
  }

  void Finish(Clock::time_point now) {
    record_->end_s = Seconds(now - sent_);
    record_->output_tokens =
        usage_output_ >= 0 ? usage_output_ : static_cast<int64_t>(record_->content_s.size());
    record_->error_kind = std::move(error_kind_);
    record_->error_message = std::move(error_message_);
    if (record_->completed()) {
      ++tally_->completed;
      tally_->output_tokens += record_->output_tokens;
    } else if (record_->failed()) {
      ++tally_->failed;
    }
  }

  RequestRecord* record_ = nullptr;
  Clock::time_point sent_;
  Tally* tally_ = nullptr;
  int status_ = 0;
  bool not_stream_ = false;
  bool done_ = false;
  int64_t usage_output_ = -1;
  SseParser sse_;
  StreamChunk chunk_;
  std::string error_kind_;
  std::string error_message_;
  std::string error_body_;
};

}  // namespace

RunResult RunLoad(HttpClient& client, const Dataset& dataset, std::span<const double> arrivals,
                  const RunOptions& options, const std::atomic<bool>* stop, Progress* progress) {
  const size_t n = dataset.requests.size();
  RunResult result;
  result.records.resize(n);
  std::vector<StreamRecorder> recorders(n);
  Tally tally;
  size_t next = 0;
  const size_t cap = options.max_concurrency > 0 ? options.max_concurrency : SIZE_MAX;
  const Clock::time_point start = Clock::now();
  const Clock::time_point cut =
      options.duration_s ? start + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(*options.duration_s))
                         : Clock::time_point::max();
  auto report = [&](bool final) {
    if (progress == nullptr) return;
    ProgressState p;
    p.total = n;
    p.sent = next;
    p.completed = tally.completed;
    p.failed = tally.failed;
    p.output_tokens = tally.output_tokens;
    p.in_flight = client.in_flight();
    p.elapsed_s = final ? result.duration_s : Seconds(Clock::now() - start);
    progress->Update(p, final);
  };
  while (true) {
    const Clock::time_point now = Clock::now();
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) {
      result.interrupted = true;
      break;
    }
    if (now >= cut) {
      result.duration_reached = true;
      break;
    }
    const double elapsed = Seconds(now - start);
    while (next < n && arrivals[next] <= elapsed && client.in_flight() < cap) {
      RequestRecord& record = result.records[next];
      const RequestSpec& spec = dataset.requests[next];
      record.index = next;
      record.scheduled_s = arrivals[next];
      record.prompt_tokens = spec.input_len;
      record.sent = true;
      std::string request = HttpRequest(options.path, options.host_header, options.api_key,
                                        RequestBody(spec, next, options.body));
      const Clock::time_point sent = Clock::now();
      record.start_s = Seconds(sent - start);
      recorders[next].Start(&record, spec.output_len, sent, &tally);
      client.Send(std::move(request), &recorders[next]);
      ++next;
    }
    if (next == n && client.in_flight() == 0) break;
    Clock::duration wait = kIdleWait;
    if (next < n && client.in_flight() < cap) {
      const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(arrivals[next]));
      wait = std::min(wait, due - now);
    }
    wait = std::min(wait, cut - now);
    client.Poll(std::max(wait, Clock::duration::zero()));
    report(/*final=*/false);
  }
  if (result.interrupted || result.duration_reached) {
    client.CancelAll(result.interrupted ? "interrupted" : "--duration reached");
  }
  // The run lasts from its start until its last request ended, or to the cut: a trace cut at
  // --duration covers the whole window even when its last request ended earlier.
  for (const RequestRecord& r : result.records) {
    if (r.sent) result.duration_s = std::max(result.duration_s, r.start_s + r.end_s);
  }
  if (result.duration_reached) result.duration_s = *options.duration_s;
  report(/*final=*/true);
  return result;
}

}  // namespace tandem::bench
