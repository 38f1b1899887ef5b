// The `tandem` command.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>

#include "cli/run_command.h"

int main(int argc, char** argv) {
  CLI::App app("tandem: disaggregated LLM serving", "tandem");
  app.require_subcommand(1);
  std::function<int()> run = tandem::cli::AddRunCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, so scripts and users see the cause at once.
    std::fprintf(stderr, "tandem: error: %s (see tandem --help)\n", e.what());
    return 2;
  }
  if (app.got_subcommand("run")) return run();
  return 2;
}
