#include "cli/bench/bench.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <thread>

#include "cli/bench/arrival.h"
#include "cli/bench/http_client.h"
#include "cli/bench/metrics.h"
#include "cli/bench/models.h"
#include "cli/bench/plots.h"
#include "cli/bench/report.h"
#include "cli/bench/request_body.h"
#include "cli/bench/runner.h"
#include "cli/bench/server_metrics.h"
#include "cli/bench/url.h"
#include "common/status_macros.h"

namespace tandem::bench {
namespace {

using Json = nlohmann::json;

constexpr int kDefaultVocab = 32000;

void PrintError(std::string_view message) {
  std::fprintf(stderr, "tandem bench: error: %.*s\n", static_cast<int>(message.size()),
               message.data());
}

void PrintWarning(std::string_view message) {
  std::fprintf(stderr, "tandem bench: warning: %.*s\n", static_cast<int>(message.size()),
               message.data());
}

// "inf" or a positive number of requests per second.
StatusOr<double> ParseRate(std::string_view text, std::string_view flag) {
  if (text == "inf") return std::numeric_limits<double>::infinity();
  double rate = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), rate);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !(rate > 0) ||
      !std::isfinite(rate)) {
    return InvalidArgumentError(std::string(flag) + ": '" + std::string(text) +
                                "' is not a positive number of requests per second or 'inf'");
  }
  return rate;
}

// Everything checked before the server is contacted.
struct Plan {
  Dataset dataset;
  ServerAddress server;
  Endpoint endpoint = Endpoint::kCompletions;
  // One run per entry; nullopt follows the trace's timestamps (or releases all at once).
  std::vector<std::optional<double>> rates;
  SloOptions slo;
  std::string api_key;
};

Status CheckNumbers(const BenchOptions& o) {
  if (!(o.burstiness > 0) || !std::isfinite(o.burstiness)) {
    return InvalidArgumentError("--burstiness must be a positive number");
  }
  if (!(o.speedup > 0) || !std::isfinite(o.speedup)) {
    return InvalidArgumentError("--speedup must be a positive number");
  }
  if (o.max_concurrency < 0) return InvalidArgumentError("--max-concurrency must be >= 0");
  if (o.duration_s && !(*o.duration_s > 0)) {
    return InvalidArgumentError("--duration must be a positive number of seconds");
  }
  if (!(o.request_timeout_s > 0)) return InvalidArgumentError("--request-timeout must be > 0");
  if (!(o.connect_timeout_s > 0)) return InvalidArgumentError("--connect-timeout must be > 0");
  if (o.vocab_size && *o.vocab_size < 2) return InvalidArgumentError("--vocab-size must be >= 2");
  return OkStatus();
}

StatusOr<Plan> Prepare(const BenchOptions& o) {
  TANDEM_RETURN_IF_ERROR(CheckNumbers(o));
  Plan plan;
  if (!o.request_rate.empty() && !o.request_rates.empty()) {
    return InvalidArgumentError("give --request-rate or --request-rates, not both");
  }
  if (!o.request_rates.empty()) {
    size_t pos = 0;
    while (pos <= o.request_rates.size()) {
      size_t comma = o.request_rates.find(',', pos);
      if (comma == std::string::npos) comma = o.request_rates.size();
      TANDEM_ASSIGN_OR_RETURN(
          const double rate,
          ParseRate(std::string_view(o.request_rates).substr(pos, comma - pos), "--request-rates"));
      plan.rates.push_back(rate);
      pos = comma + 1;
    }
  } else if (!o.request_rate.empty()) {
    TANDEM_ASSIGN_OR_RETURN(const double rate, ParseRate(o.request_rate, "--request-rate"));
    plan.rates.push_back(rate);
  } else {
    plan.rates.push_back(std::nullopt);
  }
  if (!o.goodput.empty()) {
    TANDEM_ASSIGN_OR_RETURN(plan.slo, ParseSlo(o.goodput));
  }
  TANDEM_ASSIGN_OR_RETURN(plan.server, ParseBaseUrl(o.base_url));
  DatasetOptions dataset_options = o.dataset;
  dataset_options.seed = o.seed;
  TANDEM_ASSIGN_OR_RETURN(plan.dataset, LoadDataset(dataset_options));
  if (o.endpoint.empty()) {
    plan.endpoint =
        plan.dataset.kind == DatasetKind::kShareGpt ? Endpoint::kChat : Endpoint::kCompletions;
  } else {
    TANDEM_ASSIGN_OR_RETURN(plan.endpoint, ParseEndpoint(o.endpoint));
  }
  if (plan.endpoint == Endpoint::kChat && plan.dataset.kind != DatasetKind::kShareGpt) {
    return InvalidArgumentError("--endpoint chat needs a text dataset (sharegpt); --dataset " +
                                std::string(DatasetKindName(plan.dataset.kind)) +
                                " sends token ids, which only completions take");
  }
  plan.api_key = o.api_key;
  for (const char* name : {"TANDEM_API_KEY", "OPENAI_API_KEY"}) {
    const char* value = std::getenv(name);
    if (plan.api_key.empty() && value != nullptr) plan.api_key = value;
  }
  return plan;
}

Json RateJson(const std::optional<double>& rate) {
  if (!rate) return nullptr;
  if (std::isinf(*rate)) return "inf";
  return *rate;
}

// The flags of one run, as they took effect.
Json ConfigJson(const BenchOptions& o, const Plan& plan, const std::string& model, int vocab,
                const std::optional<double>& rate) {
  const DatasetOptions& d = o.dataset;
  auto opt = [](const auto& v) { return v ? Json(*v) : Json(nullptr); };
  return Json{{"dataset", DatasetKindName(plan.dataset.kind)},
              {"path", d.path.empty() ? Json(nullptr) : Json(d.path)},
              {"input_len", d.kind == DatasetKind::kRandom ? Json(d.input_len) : Json(nullptr)},
              {"output_len", opt(d.output_len)},
              {"range_ratio", d.range_ratio},
              {"block_size", d.block_size},
              {"num_requests", plan.dataset.requests.size()},
              {"skipped_entries", plan.dataset.skipped},
              {"base_url", o.base_url},
              {"model", model},
              {"endpoint", plan.endpoint == Endpoint::kChat ? "chat" : "completions"},
              {"vocab_size", vocab},
              {"request_rate", RateJson(rate)},
              {"arrivals", rate ? "rate" : (plan.dataset.has_timestamps ? "trace" : "rate")},
              {"burstiness", o.burstiness},
              {"speedup", o.speedup},
              {"max_concurrency", o.max_concurrency},
              {"duration_s", opt(o.duration_s)},
              {"request_timeout_s", o.request_timeout_s},
              {"connect_timeout_s", o.connect_timeout_s},
              {"goodput", o.goodput.empty() ? Json(nullptr) : Json(o.goodput)},
              {"seed", o.seed}};
}

std::string Title(const Plan& plan, const std::optional<double>& rate, int max_concurrency) {
  std::string title = "tandem bench: " + std::string(DatasetKindName(plan.dataset.kind));
  if (!rate && plan.dataset.has_timestamps) {
    title += ", trace timestamps";
  } else if (!rate || std::isinf(*rate)) {
    title += ", all at once";
  } else {
    char buf[64];
    std::snprintf(buf, sizeof(buf), ", %g req/s", *rate);
    title += buf;
  }
  if (max_concurrency > 0) title += ", concurrency " + std::to_string(max_concurrency);
  return title;
}

Status WriteJson(const std::string& path, const Json& report) {
  std::ofstream out(path);
  out << report.dump(1, ' ', false, Json::error_handler_t::replace) << '\n';
  out.close();
  if (!out) return InvalidArgumentError("--json-out: cannot write " + path);
  return OkStatus();
}

// The model to name and the vocabulary to draw from, asking the server (GET /v1/models, always:
// it also says whether the server is tandem's) what the flags leave open. Fails only when no
// model was given and the server cannot say. `tandem` is set when the server listed the model as
// tandem's, whose /metrics then tell the mock workers' slip.
StatusOr<std::pair<std::string, int>> ResolveModel(const BenchOptions& o, const Plan& plan,
                                                   HttpClient& client, bool* tandem) {
  std::string model = o.model;
  int64_t vocab = o.vocab_size.value_or(0);  // 0: not known yet.
  const bool need_vocab = !vocab && plan.dataset.kind != DatasetKind::kShareGpt;
  *tandem = false;
  {
    StatusOr<std::vector<ServedModel>> models = ListModels(client, plan.server, plan.api_key);
    if (!models.ok() && model.empty()) {
      return models.status().WithContext("cannot list the served models (give --model to skip)");
    }
    if (models.ok() && model.empty()) {
      if (models->empty()) return UnavailableError("the server lists no models (give --model)");
      model = models->front().id;
    }
    if (models.ok() && !vocab) {
      for (const ServedModel& m : *models) {
        if (m.id == model && m.vocab_size && *m.vocab_size >= 2) vocab = *m.vocab_size;
      }
    }
    if (models.ok()) {
      for (const ServedModel& m : *models) *tandem |= m.id == model && m.owned_by == "tandem";
    }
    if (!models.ok() && (model.empty() || need_vocab)) PrintWarning(models.status().message());
  }
  if (!vocab && need_vocab) {
    PrintWarning("the server does not report the model's vocab_size; drawing token ids below " +
                 std::to_string(kDefaultVocab) + " (set --vocab-size)");
  }
  if (vocab == 0) vocab = kDefaultVocab;
  return std::make_pair(model, static_cast<int>(std::min<int64_t>(vocab, INT32_MAX)));
}

}  // namespace

int RunBench(const BenchOptions& options, const std::atomic<bool>* stop) {
  StatusOr<Plan> planned = Prepare(options);
  if (!planned.ok()) {
    PrintError(planned.status().message());
    return kExitUsage;
  }
  const Plan& plan = *planned;
  if (plan.dataset.skipped > 0) {
    PrintWarning(std::to_string(plan.dataset.skipped) +
                 " entries without a human turn answered by a gpt turn were skipped");
  }
  HttpClientOptions client_options;
  client_options.host = plan.server.host;
  client_options.port = plan.server.port;
  client_options.connect_timeout_s = options.connect_timeout_s;
  client_options.request_timeout_s = options.request_timeout_s;
  StatusOr<std::unique_ptr<HttpClient>> client = HttpClient::Create(client_options);
  if (!client.ok()) {
    PrintError(client.status().message());
    return kExitFailed;
  }
  bool tandem_server = false;
  StatusOr<std::pair<std::string, int>> resolved =
      ResolveModel(options, plan, **client, &tandem_server);
  if (!resolved.ok()) {
    PrintError(resolved.status().message());
    return kExitFailed;
  }
  const auto& [model, vocab] = *resolved;

  RunOptions run;
  run.path = plan.server.api_prefix + std::string(EndpointPath(plan.endpoint));
  run.host_header = plan.server.host_header;
  run.api_key = plan.api_key;
  run.body.model = model;
  run.body.endpoint = plan.endpoint;
  run.body.tokens = TokenSpace(vocab, options.seed);
  run.body.block_size = plan.dataset.block_size;
  run.max_concurrency = options.max_concurrency;
  run.duration_s = options.duration_s;

  Json runs = Json::array();
  int64_t failed = 0, total = 0;
  std::map<std::string, int64_t> errors;
  bool interrupted = false;
  for (size_t i = 0; i < plan.rates.size() && !interrupted; ++i) {
    const std::optional<double> rate = plan.rates[i];
    ArrivalOptions arrival;
    arrival.request_rate = rate;
    arrival.burstiness = options.burstiness;
    arrival.speedup = options.speedup;
    arrival.seed = options.seed;
    const std::vector<double> arrivals = ArrivalOffsets(plan.dataset, arrival);
    const std::string title = Title(plan, rate, options.max_concurrency);
    Progress progress(title.substr(title.find(": ") + 2), StdoutIsTerminal());
    // Only tandem's frontend is asked: another server's /metrics may be slow, large or absent.
    const std::optional<MockTimes> mock_before =
        tandem_server ? ReadMockTimes(**client, plan.server, plan.api_key) : std::nullopt;
    const RunResult result = RunLoad(**client, plan.dataset, arrivals, run, stop, &progress);
    // A tandem frontend shows the mock figures once a mock worker has stepped: absent before the
    // first run, they were zero.
    std::optional<MockSlip> slip;
    if (tandem_server && !result.interrupted) {
      // The workers' last load reports reach the frontend within 100 ms.
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      if (auto after = ReadMockTimes(**client, plan.server, plan.api_key)) {
        slip = SlipBetween(mock_before.value_or(MockTimes{}), *after);
      }
    }
    interrupted = result.interrupted;
    const RunSummary summary = SummarizeRun(result.records, result.duration_s, plan.slo);
    PrintRunTable(stdout, title + (interrupted ? " (interrupted)" : ""), summary, result.records);
    Json run_json = RunJson(ConfigJson(options, plan, model, vocab, rate), summary, result.records);
    if (slip) {
      std::printf("%-34s %.2f%% of %.1f s simulated%s\n", "mock engine slip",
                  slip->slip_fraction * 100, slip->expected_seconds,
                  slip->valid ? "" : "  INVALID: the machine could not keep up (over 5%)");
      run_json["server"] = {{"mock_expected_seconds", slip->expected_seconds},
                            {"mock_actual_seconds", slip->actual_seconds},
                            {"mock_slip_fraction", slip->slip_fraction},
                            {"valid", slip->valid}};
    }
    std::fflush(stdout);
    runs.push_back(std::move(run_json));
    failed += summary.failed;
    total += static_cast<int64_t>(result.records.size());
    for (const auto& [kind, count] : summary.errors) errors[kind] += count;
  }

  Json report = runs.size() == 1 ? runs[0] : Json{{"format", kReportFormat}, {"runs", runs}};
  int exit_code = interrupted ? kExitInterrupted : failed > 0 ? kExitFailed : kExitOk;
  std::string json_path = options.json_out;
  if (json_path.empty() && !options.plots_dir.empty())
    json_path = options.plots_dir + "/bench.json";
  if (!json_path.empty()) {
    if (!options.plots_dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(options.plots_dir, ec);
    }
    if (Status s = WriteJson(json_path, report); !s.ok()) {
      PrintError(s.message());
      exit_code = interrupted ? exit_code : kExitFailed;
    } else if (!options.plots_dir.empty()) {
      if (Status p = WritePlots(json_path, options.plots_dir); !p.ok()) {
        PrintError(p.message());
        exit_code = interrupted ? exit_code : kExitFailed;
      }
    }
  }
  if (failed > 0) {
    std::string kinds;
    for (const auto& [kind, count] : errors) {
      kinds += (kinds.empty() ? "" : ", ") + kind + ": " + std::to_string(count);
    }
    PrintError(std::to_string(failed) + " of " + std::to_string(total) + " requests failed (" +
               kinds + ")");
  }
  if (interrupted) PrintError("interrupted; the report covers what completed");
  return exit_code;
}

}  // namespace tandem::bench
