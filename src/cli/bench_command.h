// `tandem bench`: a load generator for any OpenAI-compatible server (see bench/README.md), and
// `tandem bench compare A.json B.json`.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace tandem::cli {

// Registers the `bench` subcommand on `app`; the returned function runs it (exit code) after a
// successful parse.
std::function<int()> AddBenchCommand(CLI::App& app);

}  // namespace tandem::cli
