#include "router/discovery.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "common/file_util.h"

namespace tandem::router {
namespace {

std::string_view Trim(std::string_view s) {
  const size_t begin = s.find_first_not_of(" \t\r");
  if (begin == std::string_view::npos) return {};
  const size_t end = s.find_last_not_of(" \t\r");
  return s.substr(begin, end - begin + 1);
}

// "host:port" with a port in 1..65535; the error says what is wrong with `item`.
Status CheckEndpoint(std::string_view item) {
  const std::string quoted = "'" + std::string(item) + "'";
  const size_t colon = item.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return InvalidArgumentError("expected host:port, got " + quoted);
  }
  const std::string_view port_text = item.substr(colon + 1);
  int port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535) {
    return InvalidArgumentError("bad port in " + quoted + " (1..65535)");
  }
  return OkStatus();
}

class StaticDiscovery final : public Discovery {
 public:
  explicit StaticDiscovery(std::vector<std::string> addresses) : addresses_(std::move(addresses)) {}

  Status Start(DiscoveryListener* listener) override {
    for (const std::string& a : addresses_) listener->OnWorkerAdded(WorkerEndpoint{a, a});
    return OkStatus();
  }
  void Stop() override {}
  std::string description() const override { return "static"; }

 private:
  const std::vector<std::string> addresses_;
};

class FileDiscovery final : public Discovery {
 public:
  FileDiscovery(std::string path, std::chrono::milliseconds poll)
      : path_(std::move(path)), poll_(poll) {}
  ~FileDiscovery() override { Stop(); }

  Status Start(DiscoveryListener* listener) override {
    listener_ = listener;
    stamp_ = Stamp();
    StatusOr<std::vector<std::string>> list = Read();
    if (!list.ok()) return list.status();
    Apply(*list);
    thread_ = std::thread([this] { Watch(); });
    return OkStatus();
  }

  void Stop() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  std::string description() const override { return "file:" + path_; }

 private:
  // What tells that the file changed: its inode, size and modification time (0s when missing).
  struct FileStamp {
    ino_t inode = 0;
    off_t size = -1;
    int64_t mtime_ns = 0;
    friend bool operator==(const FileStamp&, const FileStamp&) = default;
  };

  FileStamp Stamp() const {
    struct stat st;
    if (stat(path_.c_str(), &st) != 0) return FileStamp{};
    return FileStamp{st.st_ino, st.st_size,
                     int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
  }

  StatusOr<std::vector<std::string>> Read() const {
    StatusOr<std::string> text = ReadFileToString(path_);
    if (!text.ok()) return text.status().WithContext("--workers-file");
    return ParseWorkersFile(*text, path_);
  }

  void Watch() {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, poll_, [this] { return stopping_; })) {
      const FileStamp now = Stamp();
      if (now == stamp_) continue;
      stamp_ = now;
      StatusOr<std::vector<std::string>> list = Read();
      if (!list.ok()) {
        spdlog::error("worker list unusable, keeping the workers as they are path={} error={}",
                      path_, list.status().ToString());
        continue;
      }
      lock.unlock();
      Apply(*list);
      lock.lock();
    }
  }

  // Reports what differs from the last list.
  void Apply(const std::vector<std::string>& list) {
    const std::set<std::string> next(list.begin(), list.end());
    for (const std::string& gone : known_) {
      if (!next.contains(gone)) {
        spdlog::info("worker removed from the list path={} worker={}", path_, gone);
        listener_->OnWorkerRemoved(gone);
      }
    }
    for (const std::string& a : list) {
      if (!known_.contains(a)) listener_->OnWorkerAdded(WorkerEndpoint{a, a});
    }
    known_ = next;
  }

  const std::string path_;
  const std::chrono::milliseconds poll_;
  DiscoveryListener* listener_ = nullptr;
  std::set<std::string> known_;  // Start's thread, then the watch thread.
  FileStamp stamp_;              // Likewise.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // Guarded by mu_.
  std::thread thread_;
};

}  // namespace

StatusOr<std::vector<std::string>> ParseEndpoints(std::string_view list, std::string_view option) {
  const std::string opt(option);
  if (list.empty()) return InvalidArgumentError(opt + ": no endpoints given");
  std::vector<std::string> out;
  std::set<std::string_view> seen;
  size_t pos = 0;
  while (pos <= list.size()) {
    const size_t comma = std::min(list.find(',', pos), list.size());
    const std::string_view item = list.substr(pos, comma - pos);
    if (item.empty()) {
      return InvalidArgumentError(opt + ": empty endpoint in '" + std::string(list) + "'");
    }
    if (Status s = CheckEndpoint(item); !s.ok()) return s.WithContext(opt);
    if (!seen.insert(item).second) {
      return InvalidArgumentError(opt + ": duplicate '" + std::string(item) + "'");
    }
    out.emplace_back(item);
    pos = comma + 1;
  }
  return out;
}

StatusOr<std::vector<std::string>> ParseWorkersFile(std::string_view text, std::string_view path) {
  std::vector<std::string> out;
  std::set<std::string_view> seen;
  int line_number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t newline = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, newline - pos);
    pos = newline + 1;
    ++line_number;
    line = Trim(line.substr(0, std::min(line.find('#'), line.size())));
    if (line.empty()) continue;
    const std::string where = std::string(path) + ":" + std::to_string(line_number);
    if (Status s = CheckEndpoint(line); !s.ok()) return s.WithContext(where);
    if (!seen.insert(line).second) {
      return InvalidArgumentError(where + ": duplicate '" + std::string(line) + "'");
    }
    out.emplace_back(line);
  }
  return out;
}

std::unique_ptr<Discovery> CreateStaticDiscovery(std::vector<std::string> addresses) {
  return std::make_unique<StaticDiscovery>(std::move(addresses));
}

std::unique_ptr<Discovery> CreateFileDiscovery(std::string path,
                                               std::chrono::milliseconds poll_interval) {
  return std::make_unique<FileDiscovery>(std::move(path), poll_interval);
}

}  // namespace tandem::router
