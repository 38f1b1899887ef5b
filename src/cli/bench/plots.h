// --plots DIR: PNGs drawn from a report by scripts/bench_plots.py with Debian's matplotlib
// (/usr/bin/python3).
//
// Thread safety: runs a child process and waits for it; call from one thread.
#pragma once

#include <string>

#include "tandem/status.h"

namespace tandem::bench {

// The plotting script: next to the binary in a build tree (<bin>/../../scripts/), else in the
// source tree the binary was built from. NotFound naming both places when neither has it.
StatusOr<std::string> FindPlotScript();

// Runs the script on the report at `json_path`, writing PNGs into `dir` (created if needed).
Status WritePlots(const std::string& json_path, const std::string& dir);

}  // namespace tandem::bench
