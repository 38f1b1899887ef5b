// `tandem serve`: a whole serving cluster on this machine. Starts N `tandem-decode-worker`
// daemons (aggregated role) and one `tandem-frontend` in front of them (static discovery), waits
// until the frontend answers GET /health, prints one ready line with the OpenAI base URL on
// standard output, and stays in the foreground, supervising (cli/supervisor.h): a daemon that
// exits is restarted on the same ports while the others serve. SIGINT/SIGTERM stop the frontend
// first (it drains its streams within --drain-timeout), then the workers; serve exits 0 when
// every daemon stopped cleanly, 1 otherwise (requests cut at the drain deadline among them).
// Without --model it serves the demo model (model/demo_model.h) with random weights, written
// into the state directory.
//
// Children run in their own process group (the terminal's Ctrl-C reaches serve alone, which
// stops them in order) and receive SIGTERM should serve itself die (PR_SET_PDEATHSIG). The API
// key reaches the frontend through its environment, never its command line.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace tandem::cli {

// Registers the `serve` subcommand on `app`; the returned function runs it (exit code) after a
// successful parse. `argc`/`argv` are main's: serve overwrites the value of --api-key in them
// so ps does not show it.
std::function<int()> AddServeCommand(CLI::App& app, int argc, char** argv);

}  // namespace tandem::cli
