// Progress of a run while it goes: a bar redrawn in place when stdout is a terminal, else a
// plain line on stderr every few seconds (logs and CI stay readable, stdout stays the report).
//
// Thread safety: none; the run loop's thread calls it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>

namespace tandem::bench {

struct ProgressState {
  size_t total = 0;
  size_t sent = 0;
  size_t completed = 0;
  size_t failed = 0;
  size_t in_flight = 0;
  double elapsed_s = 0;
  int64_t output_tokens = 0;
};

class Progress {
 public:
  // `label` heads every line ("rate 4/s"). `terminal`: draw a bar on stdout.
  Progress(std::string label, bool terminal);
  // Redraws at most 10 times a second (bar) or every 5 seconds (lines); `final` always draws
  // and, for the bar, ends its line.
  void Update(const ProgressState& state, bool final = false);

 private:
  std::string label_;
  bool terminal_;
  std::chrono::steady_clock::time_point last_;
  bool drawn_ = false;
};

// Whether stdout is a terminal.
bool StdoutIsTerminal();

}  // namespace tandem::bench
