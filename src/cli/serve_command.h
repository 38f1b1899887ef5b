// `tandem serve`: a whole serving cluster on this machine. Starts N `tandem-decode-worker`
// daemons (aggregated role) and one `tandem-frontend` in front of them (static discovery), waits
// until the frontend answers GET /health, prints one ready line with the OpenAI base URL on
// standard output, and stays in the foreground. SIGINT/SIGTERM stop the frontend first (it
// drains its streams), then the workers; a child that dies unexpectedly stops the rest and
// serve exits 1. Without --model it serves the demo model (model/demo_model.h) with random
// weights, written into the state directory.
//
// Children run in their own process group (the terminal's Ctrl-C reaches serve alone, which
// stops them in order) and receive SIGTERM should serve itself die (PR_SET_PDEATHSIG).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace tandem::cli {

// Registers the `serve` subcommand on `app`; the returned function runs it (exit code) after a
// successful parse.
std::function<int()> AddServeCommand(CLI::App& app);

}  // namespace tandem::cli
