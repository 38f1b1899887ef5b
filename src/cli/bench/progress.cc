#include "cli/bench/progress.h"

#include <unistd.h>

namespace tandem::bench {

bool StdoutIsTerminal() { return ::isatty(STDOUT_FILENO) == 1; }

Progress::Progress(std::string label, bool terminal)
    : label_(std::move(label)), terminal_(terminal), last_(std::chrono::steady_clock::now()) {}

void Progress::Update(const ProgressState& s, bool final) {
  const auto now = std::chrono::steady_clock::now();
  const auto every = terminal_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000);
  // The bar appears at once; lines only every 5 s (a short run prints none).
  if (!final && (drawn_ || !terminal_) && now - last_ < every) return;
  last_ = now;
  const size_t done = s.completed + s.failed;
  const double tok_s = s.elapsed_s > 0 ? static_cast<double>(s.output_tokens) / s.elapsed_s : 0;
  if (terminal_) {
    constexpr int kWidth = 30;
    const int filled =
        s.total == 0 ? kWidth : static_cast<int>(kWidth * static_cast<double>(done) / s.total);
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    std::printf("\r%s [%s] %zu/%zu done, %zu failed, %zu in flight, %.0f tok/s, %.1f s\033[K",
                label_.c_str(), bar.c_str(), done, s.total, s.failed, s.in_flight, tok_s,
                s.elapsed_s);
    if (final) std::printf("\n");
    std::fflush(stdout);
    drawn_ = true;
    return;
  }
  if (final && !drawn_) return;  // A short run: the report says it all.
  std::fprintf(stderr,
               "tandem bench: progress [%s] done=%zu/%zu failed=%zu in_flight=%zu tok_s=%.0f "
               "elapsed_s=%.1f\n",
               label_.c_str(), done, s.total, s.failed, s.in_flight, tok_s, s.elapsed_s);
  drawn_ = true;
}

}  // namespace tandem::bench
