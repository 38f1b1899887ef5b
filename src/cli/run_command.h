// `tandem run`: one-shot generation from a model directory or a built-in configuration.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace tandem::cli {

// Registers the `run` subcommand on `app`; the returned function runs it (exit code) after a
// successful parse.
std::function<int()> AddRunCommand(CLI::App& app);

}  // namespace tandem::cli
