// Line-by-line reading of a trace file's text with 1-based line numbers, so a loader's error can
// say which line is wrong.
//
// Thread safety: pure function.
#pragma once

#include <string_view>

#include "common/status_macros.h"
#include "tandem/status.h"

namespace tandem::bench {

// Calls `fn(line_number, line)` for every line of `text` that is not blank (a trailing '\r' is
// removed); stops at and returns the first error.
template <typename Fn>
Status ForEachTraceLine(std::string_view text, Fn&& fn) {
  size_t pos = 0;
  int line_number = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    TANDEM_RETURN_IF_ERROR(fn(line_number, line));
  }
  return OkStatus();
}

}  // namespace tandem::bench
