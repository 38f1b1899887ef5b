// bench/transfer: a transfer backend's bandwidth and latency between two processes (issue 7), in
// the spirit of nixlbench and ucx_perftest: block size (64 KiB … 64 MiB, 2 MiB being one
// 16-token block of Llama-3.1-8B) against blocks per request (1 … 4,096), reads and writes.
//
// This process registers local memory and posts scattered block lists to a second process (this
// binary again, with --serve) that holds the remote region. Each cell is the median of timed
// requests. The reference runs in the same call:
//   - host memory over UCX: ucx_perftest (ucp_get / ucp_put) between two processes on loopback,
//     at the same message size; the ratio is ours / theirs;
//   - device memory: the measured copy ceilings of this GPU, pinned host ↔ device (the staged UCX
//     path moves every byte across it twice) and device → device (cuda_ipc).
//
//   bench_transfer [--backend ucx] [--kind host|device] [--sizes 64K,256K,1M,2M,4M,16M,64M]
//                  [--blocks 1,16,256,4096] [--budget-mib 256] [--no-perftest] [--json-out F]
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tandem/transfer.h"
#include "transfer/device_copy.h"
#include "transfer/wire.h"

extern char** environ;

namespace {

using namespace tandem;
using namespace tandem::transfer;
using Clock = std::chrono::steady_clock;

template <typename T>
T Check(StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    std::fprintf(stderr, "bench_transfer: %s: %s\n", what, v.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(v).value();
}

void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench_transfer: %s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

size_t ParseSize(const std::string& s) {
  const char unit = s.empty() ? 0 : s.back();
  const size_t n = std::strtoull(s.c_str(), nullptr, 10);
  return unit == 'K' ? n << 10 : unit == 'M' ? n << 20 : unit == 'G' ? n << 30 : n;
}

std::string SizeText(size_t n) {
  if (n >= (1 << 20) && n % (1 << 20) == 0) return std::to_string(n >> 20) + " MiB";
  if (n >= 1024 && n % 1024 == 0) return std::to_string(n >> 10) + " KiB";
  return std::to_string(n) + " B";
}

// A registered region of either kind, filled with a pattern so that nothing moves zeros. Host
// memory is the backend's own (`allocated`: Register with a null base) or ours (`user`).
struct Memory {
  MemoryKind kind;
  size_t bytes;
  std::vector<std::byte> host;
  void* device = nullptr;
  std::unique_ptr<Registration> registration;

  int device_index;

  Memory(Backend& backend, MemoryKind k, bool allocated, size_t n, uint64_t seed, int dev = 0)
      : kind(k), bytes(n), device_index(dev) {
    std::vector<std::byte> pattern(n);
    std::mt19937_64 rng(seed);
    for (size_t i = 0; i + 8 <= n; i += 8) {
      const uint64_t v = rng();
      std::memcpy(pattern.data() + i, &v, 8);
    }
    if (kind == MemoryKind::kDevice) {
      device = Check(AllocDevice(dev, n), "device memory");
      Check(CopySync(device, pattern.data(), n), "fill device memory");
      registration = Check(backend.Register({device, n, kind, dev}), "register");
    } else if (allocated) {
      registration = Check(backend.Register({nullptr, n, kind, -1}), "register");
      std::memcpy(registration->region().base, pattern.data(), n);
    } else {
      host = std::move(pattern);
      registration = Check(backend.Register({host.data(), n, kind, -1}), "register");
    }
  }
  ~Memory() {
    registration.reset();
    FreeDevice(device_index, device);
  }
};

// --serve: the remote end.
int Serve(const std::string& backend_name, MemoryKind kind, bool allocated, size_t bytes,
          int device) {
  auto backend = Check(CreateBackend(backend_name), "backend");
  Memory memory(*backend, kind, allocated, bytes, 7, device);
  auto& registration = memory.registration;
  std::cout << wire::ToHex(registration->descriptor().bytes) << std::endl;
  for (std::string line; std::getline(std::cin, line);) {
  }
  return 0;
}

struct Child {
  pid_t pid = -1;
  int in = -1, out = -1;
};

Child Spawn(std::vector<std::string> args, bool pipes) {
  Child c;
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (pipes) {
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) std::exit(1);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  } else {
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (posix_spawnp(&c.pid, argv[0], &actions, nullptr, argv.data(), environ) != 0) c.pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  if (pipes) {
    close(in[0]);
    close(out[1]);
    c.in = in[1];
    c.out = out[0];
  }
  return c;
}

std::string ReadLine(int fd) {
  std::string line;
  char ch;
  while (read(fd, &ch, 1) == 1 && ch != '\n') line += ch;
  return line;
}

// ucx_perftest between two processes on loopback: GB/s at one message size, or -1.
double Perftest(const std::string& test, size_t size) {
  static int port = 20000 + getpid() % 10000;
  ++port;
  Child server = Spawn({"ucx_perftest", "-p", std::to_string(port)}, false);
  if (server.pid < 0) return -1;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const size_t iters = std::clamp<size_t>((size_t{8} << 30) / size, 100, 20000);
  const std::string cmd = "ucx_perftest 127.0.0.1 -p " + std::to_string(port) + " -t " + test +
                          " -s " + std::to_string(size) + " -n " + std::to_string(iters) +
                          " -w " + std::to_string(iters / 10) + " 2>&1";
  double gbps = -1;
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, f)) {
      // Final: iterations lat50 lat_avg lat_overall bw_avg bw_overall(MB/s, MB = 2^20) rates
      double v[7];
      if (std::sscanf(buf, "Final: %lf %lf %lf %lf %lf %lf %lf", &v[0], &v[1], &v[2], &v[3],
                      &v[4], &v[5], &v[6]) == 7) {
        gbps = v[5] * 1048576.0 / 1e9;
      }
    }
    pclose(f);
  }
  kill(server.pid, SIGTERM);
  waitpid(server.pid, nullptr, 0);
  return gbps;
}

// Median seconds of a synchronous copy of `bytes`.
double CopySeconds(void* dst, const void* src, size_t bytes) {
  std::vector<double> t;
  for (int i = 0; i < 12; ++i) {
    const auto start = Clock::now();
    Check(CopySync(dst, src, bytes), "copy");
    if (i >= 2) t.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  return Median(t);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("bench_transfer");
  std::string backend_name = "ucx", kind_name = "host", memory_name = "allocated", json_out;
  std::string sizes_text = "64K,256K,1M,2M,4M,16M,64M", blocks_text = "1,16,256,4096";
  size_t budget_mib = 256;
  bool serve = false, no_perftest = false;
  size_t serve_bytes = 0;
  int peer_device = 0;
  app.add_option("--backend", backend_name);
  app.add_option("--kind", kind_name)->check(CLI::IsMember({"host", "device"}));
  app.add_option("--sizes", sizes_text);
  app.add_option("--blocks", blocks_text);
  app.add_option("--budget-mib", budget_mib, "most bytes one request moves");
  app.add_option("--memory", memory_name, "host memory: the backend's own or plain user memory")
      ->check(CLI::IsMember({"allocated", "user"}));
  app.add_flag("--no-perftest", no_perftest);
  app.add_option("--peer-device", peer_device, "device memory: the serving process's GPU");
  app.add_option("--json-out", json_out);
  app.add_flag("--serve", serve)->group("");
  app.add_option("--serve-bytes", serve_bytes)->group("");
  CLI11_PARSE(app, argc, argv);
  const MemoryKind kind = kind_name == "device" ? MemoryKind::kDevice : MemoryKind::kHost;
  const bool allocated = memory_name == "allocated";
  if (serve) return Serve(backend_name, kind, allocated, serve_bytes, peer_device);

  std::vector<size_t> sizes, blocks;
  for (const auto& s : CLI::detail::split(sizes_text, ',')) sizes.push_back(ParseSize(s));
  for (const auto& s : CLI::detail::split(blocks_text, ',')) blocks.push_back(std::stoul(s));
  const size_t budget = budget_mib << 20;

  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 1;
  self[n] = 0;
  Child peer = Spawn({self, "--serve", "--backend", backend_name, "--kind", kind_name,
                      "--memory", memory_name, "--serve-bytes", std::to_string(budget),
                      "--peer-device", std::to_string(peer_device)},
                     true);
  const std::string descriptor = wire::FromHex(ReadLine(peer.out));
  if (descriptor.empty()) {
    std::fprintf(stderr, "bench_transfer: the serving process did not start\n");
    return 1;
  }

  auto backend = Check(CreateBackend(backend_name), "backend");
  auto connection = Check(backend->Connect({backend_name, descriptor}), "connect");
  Memory local(*backend, kind, allocated, budget, 3);
  Registration* registration = local.registration.get();

  nlohmann::json out = {{"backend", backend_name},
                        {"kind", kind_name},
                        {"host_memory", memory_name},
                        {"cells", nlohmann::json::array()}};
  // The reference of each size and direction.
  std::map<std::pair<size_t, int>, double> reference;
  std::string reference_name;
  if (kind == MemoryKind::kHost && backend_name == "ucx" && !no_perftest) {
    reference_name = "ucx_perftest";
    for (size_t size : sizes) {
      reference[{size, 0}] = Perftest("ucp_get", size);
      reference[{size, 1}] = Perftest("ucp_put_bw", size);
    }
  } else if (kind == MemoryKind::kDevice) {
    constexpr size_t kCopy = 256 << 20;
    // Device to device: on one GPU, or from this GPU to the peer's (peer access on).
    void* a = Check(AllocDevice(0, kCopy), "device memory");
    void* b = Check(AllocDevice(peer_device, kCopy), "device memory");
    if (peer_device != 0) Check(EnablePeerAccess(0, peer_device), "peer access");
    void* pinned = Check(AllocPinned(kCopy), "pinned memory");
    const double h2d = kCopy / CopySeconds(a, pinned, kCopy) / 1e9;
    const double d2h = kCopy / CopySeconds(pinned, a, kCopy) / 1e9;
    const double d2d = kCopy / CopySeconds(b, a, kCopy) / 1e9;
    FreePinned(pinned);
    FreeDevice(0, a);
    FreeDevice(peer_device, b);
    out["ceilings_gbps"] = {{"pinned_to_device", h2d}, {"device_to_pinned", d2h},
                            {"device_to_device", d2d}};
    std::printf("ceilings: pinned→device %.1f GB/s, device→pinned %.1f GB/s, device %d→device %d "
                "%.1f GB/s (bytes copied / time)\n",
                h2d, d2h, 0, peer_device, d2d);
    out["peer_device"] = peer_device;
    const bool ipc = backend_name != "ucx";  // cuda_ipc, nccl: device to device
    reference_name = ipc ? "device copy" : "pinned↔device copy";
    for (size_t size : sizes) {
      reference[{size, 0}] = ipc ? d2d : std::min(h2d, d2h);
      reference[{size, 1}] = ipc ? d2d : std::min(h2d, d2h);
    }
  }

  std::printf("\n%s, %s memory%s, two processes; GB/s (median request), latency of one "
              "request\n",
              backend_name.c_str(), kind_name.c_str(),
              kind == MemoryKind::kHost ? (" (" + memory_name + ")").c_str() : "");
  std::printf("%-6s %9s %7s %10s %12s %10s %7s %10s %7s\n", "dir", "block", "blocks", "GB/s",
              "latency", reference_name.empty() ? "ref" : "ref GB/s", "ratio", "memcpy", "ratio");
  std::vector<std::byte> scratch(kind == MemoryKind::kHost ? budget : 0, std::byte{1});
  std::mt19937 rng(5);
  for (int dir = 0; dir < 2; ++dir) {
    for (size_t size : sizes) {
      for (size_t count : blocks) {
        if (size * count > budget) continue;
        std::vector<size_t> perm(budget / size);
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        std::vector<TransferOp> ops;
        for (size_t i = 0; i < count; ++i) {
          ops.push_back({.local_offset = perm[i] * size, .remote_offset = i * size, .bytes = size});
        }
        std::vector<double> times;
        const auto begin = Clock::now();
        for (int i = 0; i < 200; ++i) {
          const auto start = Clock::now();
          auto t = Check(backend->Post(*registration, *connection, ops,
                                       dir == 0 ? Direction::kRead : Direction::kWrite,
                                       start + std::chrono::seconds(60)),
                         "post");
          Check(t->Wait(), "transfer");
          if (i > 0) times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
          if (i >= 5 && Clock::now() - begin > std::chrono::milliseconds(400)) break;
        }
        const double seconds = Median(times);
        // Host memory: the same scattered copies by memcpy within one process, the ceiling of a
        // one-sided path through shared memory (a single block stays in cache, as ucx_perftest's
        // one buffer does; thousands of scattered blocks go to DRAM).
        double memcpy_gbps = -1;
        if (kind == MemoryKind::kHost) {
          auto* dst = static_cast<std::byte*>(local.registration->region().base);
          std::vector<double> copies;
          for (int i = 0; i < 7; ++i) {
            const auto start = Clock::now();
            for (const TransferOp& op : ops) {
              std::memcpy(dst + op.local_offset, scratch.data() + op.remote_offset, op.bytes);
            }
            if (i > 0) copies.push_back(std::chrono::duration<double>(Clock::now() - start).count());
          }
          memcpy_gbps = double(size * count) / Median(copies) / 1e9;
        }
        const double gbps = double(size * count) / seconds / 1e9;
        const auto ref = reference.find({size, dir});
        const double ref_gbps = ref == reference.end() ? -1 : ref->second;
        const double ratio = ref_gbps > 0 ? gbps / ref_gbps : -1;
        const auto text = [](double v, bool percent) {
          if (v <= 0) return std::string("-");
          char b[32];
          std::snprintf(b, sizeof b, percent ? "%.0f%%" : "%.2f", percent ? v * 100 : v);
          return std::string(b);
        };
        std::printf("%-6s %9s %7zu %10.2f %9.1f us %10s %7s %10s %7s\n",
                    dir == 0 ? "read" : "write", SizeText(size).c_str(), count, gbps,
                    seconds * 1e6, text(ref_gbps, false).c_str(), text(ratio, true).c_str(),
                    text(memcpy_gbps, false).c_str(),
                    text(memcpy_gbps > 0 ? gbps / memcpy_gbps : -1, true).c_str());
        out["cells"].push_back({{"direction", dir == 0 ? "read" : "write"},
                                {"block_bytes", size},
                                {"blocks", count},
                                {"gbps", gbps},
                                {"request_us", seconds * 1e6},
                                {"reference", reference_name},
                                {"reference_gbps", ref_gbps},
                                {"ratio", ratio},
                                {"memcpy_gbps", memcpy_gbps}});
      }
    }
  }
  close(peer.in);
  waitpid(peer.pid, nullptr, 0);
  if (!json_out.empty()) {
    std::ofstream(json_out) << out.dump(2) << "\n";
    std::printf("\nwrote %s\n", json_out.c_str());
  }
  return 0;
}
