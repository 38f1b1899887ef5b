#include "cli/bench/http_response_parser.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace tandem::bench {
namespace {

constexpr size_t kMaxHead = 64 * 1024;
constexpr size_t kMaxLine = 4096;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool ContainsTokenIgnoreCase(std::string_view list, std::string_view token) {
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view item = list.substr(pos, comma - pos);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (EqualsIgnoreCase(item, token)) return true;
    pos = comma + 1;
  }
  return false;
}

}  // namespace

void HttpResponseParser::Reset() {
  state_ = State::kHead;
  started_ = false;
  head_.clear();
  line_.clear();
  status_ = 0;
  keep_alive_ = true;
  content_type_.clear();
  remaining_ = 0;
  error_.clear();
}

HttpResponseParser::Event HttpResponseParser::Fail(std::string why) {
  state_ = State::kError;
  error_ = std::move(why);
  keep_alive_ = false;
  return Event::kError;
}

bool HttpResponseParser::TakeLine(std::string_view* input) {
  const size_t nl = input->find('\n');
  const size_t take = nl == std::string_view::npos ? input->size() : nl + 1;
  line_.append(input->data(), take);
  input->remove_prefix(take);
  return nl != std::string_view::npos;
}

HttpResponseParser::Event HttpResponseParser::ParseHead() {
  // head_ holds "status line\r\n(header\r\n)*\r\n".
  std::string_view head(head_);
  size_t eol = head.find("\r\n");
  const std::string_view status_line = head.substr(0, eol);
  // "HTTP/1.1 200 OK"
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12 || status_line[8] != ' ') {
    return Fail("malformed status line '" + std::string(status_line.substr(0, 80)) + "'");
  }
  const bool http10 = status_line[7] == '0';
  auto [end, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, status_);
  if (ec != std::errc() || end != status_line.data() + 12 || status_ < 100) {
    return Fail("malformed status line '" + std::string(status_line.substr(0, 80)) + "'");
  }
  keep_alive_ = !http10;
  bool chunked = false;
  bool has_length = false;
  uint64_t length = 0;
  head.remove_prefix(eol + 2);
  while (!head.empty() && !head.starts_with("\r\n")) {
    eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return Fail("malformed header line '" + std::string(line.substr(0, 80)) + "'");
    }
    const std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (EqualsIgnoreCase(name, "transfer-encoding")) {
      chunked = ContainsTokenIgnoreCase(value, "chunked");
    } else if (EqualsIgnoreCase(name, "content-length")) {
      auto [e, c] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (c != std::errc() || e != value.data() + value.size()) {
        return Fail("malformed Content-Length '" + std::string(value) + "'");
      }
      has_length = true;
    } else if (EqualsIgnoreCase(name, "connection")) {
      if (ContainsTokenIgnoreCase(value, "close")) keep_alive_ = false;
      if (ContainsTokenIgnoreCase(value, "keep-alive")) keep_alive_ = true;
    } else if (EqualsIgnoreCase(name, "content-type")) {
      content_type_.assign(value);
    }
  }
  if (status_ == 204 || status_ == 304) {
    state_ = State::kDone;
  } else if (chunked) {
    state_ = State::kChunkSize;
  } else if (has_length) {
    remaining_ = length;
    state_ = length == 0 ? State::kDone : State::kBodyLength;
  } else {
    state_ = State::kBodyUntilClose;
    keep_alive_ = false;
  }
  return Event::kHead;
}

HttpResponseParser::Event HttpResponseParser::Next(std::string_view* input,
                                                   std::string_view* body) {
  while (true) {
    switch (state_) {
      case State::kHead: {
        if (input->empty()) return Event::kNeedMore;
        started_ = true;
        // The blank line may straddle two reads: search from 3 bytes before the new ones.
        const size_t from = head_.size() < 3 ? 0 : head_.size() - 3;
        head_.append(*input);
        const size_t end = head_.find("\r\n\r\n", from);
        if (end == std::string::npos) {
          input->remove_prefix(input->size());
          if (head_.size() > kMaxHead) return Fail("response headers larger than 64 KiB");
          return Event::kNeedMore;
        }
        // Give back what follows the head.
        const size_t extra = head_.size() - (end + 4);
        *input = input->substr(input->size() - extra);
        head_.resize(end + 4);
        const Event event = ParseHead();
        if (event == Event::kHead && status_ < 200) {  // 1xx: an interim response; skip it.
          head_.clear();
          state_ = State::kHead;
          continue;
        }
        return event;
      }
      case State::kChunkSize: {
        if (input->empty()) return Event::kNeedMore;
        if (!TakeLine(input)) {
          if (line_.size() > kMaxLine) return Fail("chunk size line too long");
          return Event::kNeedMore;
        }
        std::string_view line(line_);
        uint64_t size = 0;
        auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
        if (ec != std::errc() || end == line.data() ||
            (*end != '\r' && *end != '\n' && *end != ';')) {
          return Fail("malformed chunk size '" + std::string(line.substr(0, 40)) + "'");
        }
        line_.clear();
        remaining_ = size;
        state_ = size == 0 ? State::kTrailer : State::kChunkData;
        continue;
      }
      case State::kChunkData:
      case State::kBodyLength: {
        if (input->empty()) return Event::kNeedMore;
        const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, input->size()));
        *body = input->substr(0, take);
        input->remove_prefix(take);
        remaining_ -= take;
        if (remaining_ == 0) {
          state_ = state_ == State::kChunkData ? State::kChunkDataEnd : State::kDone;
        }
        return Event::kBody;
      }
      case State::kChunkDataEnd: {
        if (input->empty()) return Event::kNeedMore;
        if (!TakeLine(input)) {
          if (line_.size() > 2) return Fail("chunk not followed by CRLF");
          return Event::kNeedMore;
        }
        if (line_ != "\r\n") return Fail("chunk not followed by CRLF");
        line_.clear();
        state_ = State::kChunkSize;
        continue;
      }
      case State::kTrailer: {
        if (input->empty()) return Event::kNeedMore;
        if (!TakeLine(input)) {
          if (line_.size() > kMaxLine) return Fail("trailer line too long");
          return Event::kNeedMore;
        }
        const bool blank = line_ == "\r\n";
        line_.clear();
        if (blank) state_ = State::kDone;
        continue;
      }
      case State::kBodyUntilClose: {
        if (input->empty()) return Event::kNeedMore;
        *body = *input;
        input->remove_prefix(input->size());
        return Event::kBody;
      }
      case State::kDone:
        return Event::kDone;
      case State::kError:
        return Event::kError;
    }
  }
}

HttpResponseParser::Event HttpResponseParser::OnEof() {
  if (state_ == State::kBodyUntilClose || state_ == State::kDone) {
    state_ = State::kDone;
    return Event::kDone;
  }
  if (state_ == State::kError) return Event::kError;
  return Fail(started_ ? "connection closed mid-response" : "connection closed before a response");
}

}  // namespace tandem::bench
