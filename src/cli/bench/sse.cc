#include "cli/bench/sse.h"

namespace tandem::bench {

void SseParser::Reset() {
  line_.clear();
  data_.clear();
  has_data_ = false;
  emitted_ = false;
}

bool SseParser::Line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) return has_data_;           // A blank line ends the event (if it carried data).
  if (!line.starts_with("data")) return false;  // Comments, event:, id:, retry:.
  std::string_view value = line.substr(4);
  if (!value.empty()) {
    if (value.front() != ':') return false;  // A field merely starting with "data".
    value.remove_prefix(1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (has_data_) data_ += '\n';
  data_ += value;
  has_data_ = true;
  return false;
}

bool SseParser::Next(std::string_view* input, std::string_view* data) {
  if (emitted_) {
    data_.clear();
    has_data_ = false;
    emitted_ = false;
  }
  while (!input->empty()) {
    const size_t nl = input->find('\n');
    if (nl == std::string_view::npos) {
      line_.append(*input);
      input->remove_prefix(input->size());
      return false;
    }
    bool end;
    if (line_.empty()) {
      end = Line(input->substr(0, nl));  // The common case: the whole line is in this read.
    } else {
      line_.append(input->substr(0, nl));
      end = Line(line_);
      line_.clear();
    }
    input->remove_prefix(nl + 1);
    if (end) {
      emitted_ = true;
      *data = data_;
      return true;
    }
  }
  return false;
}

}  // namespace tandem::bench
