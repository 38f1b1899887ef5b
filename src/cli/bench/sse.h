// An incremental server-sent-events parser: body bytes in, each event's `data` out (its data
// lines joined by '\n'). Other fields and comment lines are skipped.
//
// Thread safety: none; one parser per stream, used by one thread.
#pragma once

#include <string>
#include <string_view>

namespace tandem::bench {

class SseParser {
 public:
  // Consumes from the front of `*input`. Returns true with `*data` set when an event is
  // complete (`*data` stays valid until the next call); false when the input is used up.
  bool Next(std::string_view* input, std::string_view* data);

  // Whether bytes of an unfinished event are held (a stream that ends here was cut short).
  bool mid_event() const { return !line_.empty() || has_data_; }

  void Reset();

 private:
  // Handles one whole line (without its line ending); true when it ends an event.
  bool Line(std::string_view line);

  std::string line_;  // The unfinished line.
  std::string data_;  // The unfinished event's data (reused across events).
  bool has_data_ = false;
  bool emitted_ = false;  // data_ was returned; clear it before the next event.
};

}  // namespace tandem::bench
