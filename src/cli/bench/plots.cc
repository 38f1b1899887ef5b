#include "cli/bench/plots.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/status_macros.h"

extern char** environ;

namespace tandem::bench {

namespace fs = std::filesystem;

StatusOr<std::string> FindPlotScript() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  std::vector<fs::path> candidates;
  if (!ec) candidates.push_back(self.parent_path() / "../../scripts/bench_plots.py");
#ifdef TANDEM_SOURCE_DIR
  candidates.push_back(fs::path(TANDEM_SOURCE_DIR) / "scripts/bench_plots.py");
#endif
  std::string tried;
  for (const fs::path& p : candidates) {
    if (fs::exists(p, ec)) return fs::weakly_canonical(p, ec).string();
    tried += (tried.empty() ? "" : ", ") + p.lexically_normal().string();
  }
  return NotFoundError("--plots: scripts/bench_plots.py not found (looked in " + tried + ")");
}

Status WritePlots(const std::string& json_path, const std::string& dir) {
  TANDEM_ASSIGN_OR_RETURN(const std::string script, FindPlotScript());
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return InvalidArgumentError("--plots: cannot create " + dir + ": " + ec.message());
  const char* python = "/usr/bin/python3";
  std::vector<std::string> args = {python, script, json_path, dir};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, python, nullptr, nullptr, argv.data(), environ);
  if (rc != 0)
    return UnavailableError(std::string("--plots: cannot run ") + python + ": " +
                            std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return InternalError("--plots: " + script + " failed (its message is above)");
  }
  return OkStatus();
}

}  // namespace tandem::bench
