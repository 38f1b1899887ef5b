// `tandem tokenize` and `tandem detokenize`: text <-> ids with a model's tokenizer, for scripts.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace tandem::cli {

// Register the subcommands; each returned function runs its command (exit code).
std::function<int()> AddTokenizeCommand(CLI::App& app);
std::function<int()> AddDetokenizeCommand(CLI::App& app);

}  // namespace tandem::cli
