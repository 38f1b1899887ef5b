// An incremental HTTP/1.1 response parser: status line and headers, then the body with its
// framing (chunked, Content-Length, or until the connection closes) removed. Bytes go in as they
// arrive; body pieces come out as views into the input, so streamed events are not copied.
//
// Thread safety: none; one parser per connection, used by one thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tandem::bench {

class HttpResponseParser {
 public:
  enum class Event {
    kNeedMore,  // Input used up; feed more.
    kHead,      // Status and headers are known (status(), keep_alive(), content_type()).
    kBody,      // `*body` is the next piece of the body.
    kDone,      // The response is complete; unread input (if any) is left in `*input`.
    kError,     // Malformed response; error() says why. The connection is unusable.
  };

  // Starts over for the next response on the same connection.
  void Reset();

  // Consumes from the front of `*input` up to the next event.
  Event Next(std::string_view* input, std::string_view* body);

  // The peer closed the connection: returns kDone when the body runs to the close, kError
  // otherwise (the response was cut short).
  Event OnEof();

  int status() const { return status_; }
  bool keep_alive() const { return keep_alive_; }
  const std::string& content_type() const { return content_type_; }
  const std::string& error() const { return error_; }
  // Whether any byte of this response has arrived.
  bool started() const { return started_; }

 private:
  enum class State {
    kHead,
    kChunkSize,
    kChunkData,
    kChunkDataEnd,
    kTrailer,
    kBodyLength,
    kBodyUntilClose,
    kDone,
    kError
  };

  Event ParseHead();
  Event Fail(std::string why);
  // Moves bytes up to and including "\r\n" from `*input` into line_; true when a line is whole.
  bool TakeLine(std::string_view* input);

  State state_ = State::kHead;
  bool started_ = false;
  std::string head_;  // Header bytes so far (reused across responses).
  std::string line_;  // A chunk-size or trailer line so far.
  int status_ = 0;
  bool keep_alive_ = true;
  std::string content_type_;
  uint64_t remaining_ = 0;  // Bytes left of the current chunk or Content-Length body.
  std::string error_;
};

}  // namespace tandem::bench
