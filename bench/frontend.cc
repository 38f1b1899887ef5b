// bench_frontend: what the OpenAI frontend costs per streamed token (issue 4, "Speed").
//
// The real `tandem-frontend` runs pinned to one CPU in front of a fake worker hosted in this
// process: a gRPC Worker service that emits tokens without compute, one token per message, and
// records when it sent each one. An HTTP client in this process streams /v1/completions (token-id
// prompts, so each request is recognised by the worker) and records when each token's SSE event
// arrives. Both clocks are this machine's steady clock, so:
//   added per-token latency = SSE arrival - worker send, for every token;
//   added time to first token = (first arrival - HTTP send) - (first send - worker receipt);
//   tokens/s per frontend core = streamed tokens / the frontend's CPU seconds (/proc/PID/stat).
//
// Two phases: "throughput" (the worker emits as fast as the frontend drains, C streams) and
// "latency" (the worker paces each stream at --pace-ms per token, below saturation).
//
// Usage: bench_frontend [--frontend build/bin/tandem-frontend] [--concurrency 64] [--requests 256]
//                       [--max-tokens 256] [--pace-ms 5] [--json-out bench_frontend.json]
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "model/demo_model.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace {

namespace v1 = tandem::v1;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// Per request: when the worker got it and sent each token, when the client sent it and got each
// token. Indexed by request number; each field has one writer.
struct Trace {
  Clock::time_point worker_received;
  std::vector<Clock::time_point> sent;
  Clock::time_point client_sent;
  std::vector<Clock::time_point> arrived;
  int usage_tokens = 0;
};

constexpr int kKeyBase = 100;  // Prompt token i+1 carries a base-400 digit of the request number.
constexpr int kKeyRadix = 400;

std::vector<int32_t> PromptFor(int request, int length) {
  std::vector<int32_t> ids(std::max(length, 3), 4 + 'x');
  ids[0] = 1;
  ids[1] = kKeyBase + request / kKeyRadix;
  ids[2] = kKeyBase + request % kKeyRadix;
  return ids;
}

class FakeWorker final : public v1::Worker::Service {
 public:
  FakeWorker(std::vector<Trace>* traces, std::chrono::microseconds pace)
      : traces_(traces), pace_(pace) {}

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override {
    const Clock::time_point received = Clock::now();
    if (request->prompt_tokens_size() < 3) return {grpc::StatusCode::INVALID_ARGUMENT, "short"};
    const int index =
        (request->prompt_tokens(1) - kKeyBase) * kKeyRadix + (request->prompt_tokens(2) - kKeyBase);
    if (index < 0 || index >= static_cast<int>(traces_->size())) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "unknown request"};
    }
    Trace& trace = (*traces_)[index];
    trace.worker_received = received;
    const int n = request->sampling().has_max_tokens() ? request->sampling().max_tokens() : 16;
    trace.sent.resize(n);
    for (int i = 0; i < n && !context->IsCancelled(); ++i) {
      if (pace_.count() > 0) std::this_thread::sleep_until(received + i * pace_);
      v1::GenerateResponse response;
      response.add_tokens()->set_token(4 + 'a' + i % 26);  // One ASCII letter per token.
      if (i + 1 == n) {
        response.set_finished(true);
        response.set_finish_reason(v1::FINISH_REASON_LENGTH);
        response.set_prompt_tokens(request->prompt_tokens_size());
      }
      trace.sent[i] = Clock::now();
      if (!writer->Write(response)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status Cancel(grpc::ServerContext*, const v1::CancelRequest*,
                      v1::CancelResponse* response) override {
    response->set_found(false);
    return grpc::Status::OK;
  }

  grpc::Status GetInfo(grpc::ServerContext*, const v1::GetInfoRequest*,
                       v1::WorkerInfo* info) override {
    info->set_worker_id("bench-fake-worker");
    info->set_role(v1::WORKER_ROLE_AGGREGATED);
    info->set_model("demo");
    info->set_block_size(16);
    info->set_vocab_size(512);
    info->set_max_model_len(1 << 20);
    info->set_total_blocks(1 << 20);
    return grpc::Status::OK;
  }

  grpc::Status StreamLoad(grpc::ServerContext* context, const v1::StreamLoadRequest*,
                          grpc::ServerWriter<v1::LoadReport>* writer) override {
    while (!context->IsCancelled()) {
      v1::LoadReport report;
      report.set_free_blocks(1 << 20);
      if (!writer->Write(report)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return grpc::Status::OK;
  }

 private:
  std::vector<Trace>* traces_;
  std::chrono::microseconds pace_;
};

// ---- A minimal streaming HTTP/1.1 client (one connection per request) ----

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Streams one completion; records each token event's arrival. False on a protocol error.
bool StreamOne(int port, int index, int prompt_len, int max_tokens, Trace& trace) {
  nlohmann::json body = {{"model", "demo"},          {"prompt", PromptFor(index, prompt_len)},
                         {"max_tokens", max_tokens}, {"temperature", 0},
                         {"stream", true},           {"stream_options", {{"include_usage", true}}}};
  const std::string text = body.dump();
  const std::string request =
      "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Content-Type: application/json\r\nConnection: close\r\n"
      "Content-Length: " +
      std::to_string(text.size()) + "\r\n\r\n" + text;
  const int fd = Connect(port);
  if (fd < 0) return false;
  trace.client_sent = Clock::now();
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return false;
  }
  std::string raw;     // Bytes not yet consumed.
  std::string stream;  // De-chunked body not yet split into events.
  bool headers_done = false, chunked = false, ok = false;
  char buffer[16384];
  while (true) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    const Clock::time_point now = Clock::now();
    raw.append(buffer, static_cast<size_t>(n));
    if (!headers_done) {
      const size_t end = raw.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      const std::string head = raw.substr(0, end);
      if (head.find(" 200 ") == std::string::npos) break;
      std::string lower = head;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      chunked = lower.find("transfer-encoding: chunked") != std::string::npos;
      raw.erase(0, end + 4);
      headers_done = true;
    }
    if (chunked) {
      while (true) {
        const size_t line = raw.find("\r\n");
        if (line == std::string::npos) break;
        const size_t size = std::strtoul(raw.c_str(), nullptr, 16);
        if (raw.size() < line + 2 + size + 2) break;
        stream.append(raw, line + 2, size);
        raw.erase(0, line + 2 + size + 2);
      }
    } else {
      stream += raw;
      raw.clear();
    }
    size_t event_end;
    while ((event_end = stream.find("\n\n")) != std::string::npos) {
      const std::string event = stream.substr(0, event_end);
      stream.erase(0, event_end + 2);
      if (!event.starts_with("data: ")) continue;
      if (event == "data: [DONE]") {
        ok = true;
        continue;
      }
      auto j = nlohmann::json::parse(event.substr(6), nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("usage") && j["usage"].is_object()) {
        trace.usage_tokens = j["usage"].value("completion_tokens", 0);
      }
      if (j.contains("choices") && !j["choices"].empty()) {
        const std::string piece = j["choices"][0].value("text", "");
        for (size_t k = 0; k < piece.size(); ++k) trace.arrived.push_back(now);
      }
    }
  }
  ::close(fd);
  return ok;
}

// ---- The frontend process ----

struct Frontend {
  pid_t pid = -1;
  int port = 0;
};

Frontend StartFrontend(const std::string& binary, const fs::path& model_dir, int worker_port,
                       const fs::path& port_file, int cpu) {
  std::vector<std::string> args = {binary,
                                   "--model",
                                   model_dir.string(),
                                   "--workers",
                                   "127.0.0.1:" + std::to_string(worker_port),
                                   "--port",
                                   "0",
                                   "--grpc-port",
                                   "0",
                                   "--port-file",
                                   port_file.string(),
                                   "--served-model-name",
                                   "demo",
                                   "--log-level",
                                   "warn"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  Frontend f;
  f.pid = ::fork();
  if (f.pid == 0) {
    tandem::bench::PinToCpu(cpu);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  for (int i = 0; i < 600 && f.port == 0; ++i) {
    std::ifstream in(port_file);
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_discarded() && j.contains("http_port")) f.port = j["http_port"];
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return f;
}

double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  // Fields after the command's closing parenthesis: state is field 3; utime, stime are 14, 15.
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

struct PhaseResult {
  std::string name;
  int concurrency = 0, requests = 0, failed = 0;
  int64_t tokens = 0;
  double wall_s = 0, frontend_cpu_s = 0;
  double tokens_per_s = 0, tokens_per_cpu_s = 0;
  double token_p50_us = 0, token_p99_us = 0, ttft_p50_us = 0, ttft_p99_us = 0;
};

PhaseResult RunPhase(const std::string& name, const std::string& frontend_bin, const fs::path& dir,
                     int concurrency, int requests, int max_tokens, int prompt_len,
                     std::chrono::microseconds pace, int frontend_cpu) {
  std::vector<Trace> traces(requests);
  FakeWorker worker(&traces, pace);
  int worker_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &worker_port);
  builder.RegisterService(&worker);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();

  const fs::path port_file = dir / (name + ".port.json");
  Frontend frontend =
      StartFrontend(frontend_bin, dir / "demo", worker_port, port_file, frontend_cpu);
  PhaseResult r;
  r.name = name;
  r.concurrency = concurrency;
  r.requests = requests;
  if (frontend.port == 0) {
    std::fprintf(stderr, "bench_frontend: the frontend did not start\n");
    r.failed = requests;
  } else {
    // Warm-up: the frontend connects to the worker lazily (probe), so wait for a 200.
    for (int i = 0; i < 200; ++i) {
      traces[0] = Trace{};
      if (StreamOne(frontend.port, 0, prompt_len, 2, traces[0])) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    traces[0] = Trace{};
    std::atomic<int> next{0}, failed{0};
    const double cpu_before = CpuSeconds(frontend.pid);
    const Clock::time_point start = Clock::now();
    std::vector<std::thread> clients;
    for (int c = 0; c < concurrency; ++c) {
      clients.emplace_back([&] {
        for (int i = next++; i < requests; i = next++) {
          if (!StreamOne(frontend.port, i, prompt_len, max_tokens, traces[i])) ++failed;
        }
      });
    }
    for (auto& t : clients) t.join();
    r.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
    r.frontend_cpu_s = CpuSeconds(frontend.pid) - cpu_before;
    r.failed = failed;
  }
  ::kill(frontend.pid, SIGTERM);
  int status = 0;
  ::waitpid(frontend.pid, &status, 0);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));

  std::vector<double> token_us, ttft_us;
  for (const Trace& t : traces) {
    r.tokens += static_cast<int64_t>(t.arrived.size());
    if (t.arrived.empty() || t.sent.empty()) continue;
    const size_t n = std::min(t.arrived.size(), t.sent.size());
    for (size_t i = 0; i < n; ++i) token_us.push_back(Us(t.arrived[i] - t.sent[i]));
    ttft_us.push_back(Us(t.arrived[0] - t.client_sent) - Us(t.sent[0] - t.worker_received));
  }
  r.tokens_per_s = r.wall_s > 0 ? r.tokens / r.wall_s : 0;
  r.tokens_per_cpu_s = r.frontend_cpu_s > 0 ? r.tokens / r.frontend_cpu_s : 0;
  r.token_p50_us = Percentile(token_us, 0.50);
  r.token_p99_us = Percentile(token_us, 0.99);
  r.ttft_p50_us = Percentile(ttft_us, 0.50);
  r.ttft_p99_us = Percentile(ttft_us, 0.99);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("bench_frontend: OpenAI frontend cost per streamed token");
  std::string frontend_bin;
  int concurrency = 64, requests = 256, max_tokens = 256, prompt_len = 64;
  int latency_concurrency = 16, latency_requests = 64, latency_max_tokens = 128;
  double pace_ms = 5;
  std::string json_out = "bench_frontend.json";
  app.add_option("--frontend", frontend_bin, "tandem-frontend (default: next to this binary)");
  app.add_option("--concurrency", concurrency, "Streams in the throughput phase (default 64)");
  app.add_option("--requests", requests, "Requests in the throughput phase (default 256)");
  app.add_option("--max-tokens", max_tokens, "Tokens per request, throughput (default 256)");
  app.add_option("--prompt-tokens", prompt_len, "Prompt length in tokens (default 64)");
  app.add_option("--latency-concurrency", latency_concurrency, "Streams, latency phase (16)");
  app.add_option("--latency-requests", latency_requests, "Requests, latency phase (64)");
  app.add_option("--latency-max-tokens", latency_max_tokens, "Tokens per request (128)");
  app.add_option("--pace-ms", pace_ms, "Worker ms per token in the latency phase (default 5)");
  app.add_option("--json-out", json_out);
  CLI11_PARSE(app, argc, argv);
  if (requests > kKeyRadix * kKeyRadix || latency_requests > kKeyRadix * kKeyRadix) {
    std::fprintf(stderr, "bench_frontend: at most %d requests\n", kKeyRadix * kKeyRadix);
    return 2;
  }
  if (frontend_bin.empty()) {
    frontend_bin = (fs::read_symlink("/proc/self/exe").parent_path() / "tandem-frontend").string();
  }
  const fs::path dir = fs::temp_directory_path() / ("bench_frontend_" + std::to_string(getpid()));
  if (auto s = tandem::model::WriteDemoModel(dir / "demo"); !s.ok()) {
    std::fprintf(stderr, "bench_frontend: %s\n", s.ToString().c_str());
    return 1;
  }
  // The frontend gets the last CPU; this process (client and fake worker) the others.
  const int cpus = static_cast<int>(std::thread::hardware_concurrency());
  const int frontend_cpu = std::max(0, cpus - 1);
  if (cpus > 1) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c = 0; c < cpus - 1; ++c) CPU_SET(c, &set);
    sched_setaffinity(0, sizeof(set), &set);
  }

  std::vector<PhaseResult> results;
  results.push_back(RunPhase("throughput", frontend_bin, dir, concurrency, requests, max_tokens,
                             prompt_len, std::chrono::microseconds(0), frontend_cpu));
  results.push_back(RunPhase(
      "latency", frontend_bin, dir, latency_concurrency, latency_requests, latency_max_tokens,
      prompt_len, std::chrono::microseconds(static_cast<int64_t>(pace_ms * 1000)), frontend_cpu));
  std::error_code ec;
  fs::remove_all(dir, ec);

  std::printf("bench_frontend: tandem-frontend pinned to CPU %d of %d; fake worker, no compute\n",
              frontend_cpu, cpus);
  std::printf(
      "| phase | streams | requests | failed | tokens | tok/s | tok per frontend CPU-s "
      "| token p50 us | token p99 us | TTFT p50 us | TTFT p99 us |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json j = nlohmann::json::array();
  for (const PhaseResult& r : results) {
    std::printf("| %s | %d | %d | %d | %lld | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
                r.name.c_str(), r.concurrency, r.requests, r.failed,
                static_cast<long long>(r.tokens), r.tokens_per_s, r.tokens_per_cpu_s,
                r.token_p50_us, r.token_p99_us, r.ttft_p50_us, r.ttft_p99_us);
    j.push_back({{"phase", r.name},
                 {"streams", r.concurrency},
                 {"requests", r.requests},
                 {"failed", r.failed},
                 {"tokens", r.tokens},
                 {"wall_s", r.wall_s},
                 {"frontend_cpu_s", r.frontend_cpu_s},
                 {"tokens_per_s", r.tokens_per_s},
                 {"tokens_per_frontend_cpu_s", r.tokens_per_cpu_s},
                 {"token_added_p50_us", r.token_p50_us},
                 {"token_added_p99_us", r.token_p99_us},
                 {"ttft_added_p50_us", r.ttft_p50_us},
                 {"ttft_added_p99_us", r.ttft_p99_us}});
  }
  std::ofstream(json_out) << nlohmann::json{{"cpus", cpus}, {"phases", j}}.dump(2) << "\n";
  std::printf("wrote %s\n", json_out.c_str());
  int failed = 0;
  for (const PhaseResult& r : results) failed += r.failed;
  return failed == 0 ? 0 : 1;
}
