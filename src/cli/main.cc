// The `tandem` command.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>

#include "cli/bench_command.h"
#include "cli/run_command.h"
#ifdef TANDEM_HAVE_SERVE
#include "cli/serve_command.h"
#endif
#ifdef TANDEM_HAVE_TOKENIZERS
#include "cli/tokenize_command.h"
#endif

int main(int argc, char** argv) {
  CLI::App app("tandem: disaggregated LLM serving", "tandem");
  app.require_subcommand(1);
  std::function<int()> run = tandem::cli::AddRunCommand(app);
  std::function<int()> bench = tandem::cli::AddBenchCommand(app);
#ifdef TANDEM_HAVE_SERVE
  std::function<int()> serve = tandem::cli::AddServeCommand(app, argc, argv);
#endif
#ifdef TANDEM_HAVE_TOKENIZERS
  std::function<int()> tokenize = tandem::cli::AddTokenizeCommand(app);
  std::function<int()> detokenize = tandem::cli::AddDetokenizeCommand(app);
#endif
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
  if (app.got_subcommand("bench")) return bench();
#ifdef TANDEM_HAVE_SERVE
  if (app.got_subcommand("serve")) return serve();
#endif
#ifdef TANDEM_HAVE_TOKENIZERS
  if (app.got_subcommand("tokenize")) return tokenize();
  if (app.got_subcommand("detokenize")) return detokenize();
#endif
  return 2;
}
