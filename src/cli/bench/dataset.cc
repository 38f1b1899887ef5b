#include "cli/bench/dataset.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "common/status_macros.h"

namespace tandem::bench {

StatusOr<DatasetKind> ParseDatasetKind(std::string_view name) {
  if (name == "random") return DatasetKind::kRandom;
  if (name == "sharegpt") return DatasetKind::kShareGpt;
  if (name == "mooncake") return DatasetKind::kMooncake;
  if (name == "azure") return DatasetKind::kAzure;
  return InvalidArgumentError("--dataset: '" + std::string(name) +
                              "' is not one of random, sharegpt, mooncake, azure");
}

std::string_view DatasetKindName(DatasetKind kind) {
  switch (kind) {
    case DatasetKind::kRandom:
      return "random";
    case DatasetKind::kShareGpt:
      return "sharegpt";
    case DatasetKind::kMooncake:
      return "mooncake";
    case DatasetKind::kAzure:
      return "azure";
  }
  return "random";
}

int EstimateTokens(std::string_view text) {
  return std::max(1, static_cast<int>((text.size() + 3) / 4));
}

Dataset MakeRandomDataset(const DatasetOptions& options) {
  Dataset dataset;
  dataset.kind = DatasetKind::kRandom;
  // Lengths uniform in [L*(1-R), L*(1+R)], integer bounds as vLLM's random dataset takes them.
  auto range = [&](int mean) {
    const int low = std::max(1, static_cast<int>(mean * (1.0 - options.range_ratio)));
    const int high = std::max(low, static_cast<int>(mean * (1.0 + options.range_ratio)));
    return std::uniform_int_distribution<int>(low, high);
  };
  std::mt19937_64 rng(options.seed);
  auto input = range(options.input_len);
  auto output = range(options.output_len.value_or(128));
  const int n = options.num_requests.value_or(1000);
  dataset.requests.resize(n);
  for (RequestSpec& r : dataset.requests) {
    r.input_len = input(rng);
    r.output_len = output(rng);
  }
  return dataset;
}

namespace {

Status Validate(const DatasetOptions& o) {
  if (o.input_len < 1) return InvalidArgumentError("--input-len must be at least 1");
  if (o.output_len && *o.output_len < 1) {
    return InvalidArgumentError("--output-len must be at least 1");
  }
  if (!(o.range_ratio >= 0 && o.range_ratio < 1)) {
    return InvalidArgumentError("--range-ratio must be in [0, 1)");
  }
  if (o.block_size < 1) return InvalidArgumentError("--block-size must be at least 1");
  if (o.num_requests && *o.num_requests < 1) {
    return InvalidArgumentError("--num-requests must be at least 1");
  }
  const bool trace = o.kind != DatasetKind::kRandom;
  if (trace && o.path.empty()) {
    return InvalidArgumentError("--dataset " + std::string(DatasetKindName(o.kind)) +
                                " needs --path FILE");
  }
  if (!trace && !o.path.empty()) {
    return InvalidArgumentError("--path is for trace datasets (sharegpt, mooncake, azure)");
  }
  return OkStatus();
}

}  // namespace

StatusOr<Dataset> LoadDataset(const DatasetOptions& options) {
  TANDEM_RETURN_IF_ERROR(Validate(options));
  Dataset dataset;
  switch (options.kind) {
    case DatasetKind::kRandom:
      return MakeRandomDataset(options);
    case DatasetKind::kShareGpt: {
      TANDEM_ASSIGN_OR_RETURN(dataset, LoadShareGpt(options.path));
      break;
    }
    case DatasetKind::kMooncake: {
      TANDEM_ASSIGN_OR_RETURN(dataset, LoadMooncake(options.path, options.block_size));
      break;
    }
    case DatasetKind::kAzure: {
      TANDEM_ASSIGN_OR_RETURN(dataset, LoadAzure(options.path));
      break;
    }
  }
  if (dataset.requests.empty()) {
    return InvalidArgumentError(options.path + ": no requests in the trace");
  }
  if (options.num_requests &&
      static_cast<size_t>(*options.num_requests) < dataset.requests.size()) {
    dataset.requests.resize(*options.num_requests);
  }
  if (options.output_len) {
    for (RequestSpec& r : dataset.requests) r.output_len = *options.output_len;
  }
  return dataset;
}

}  // namespace tandem::bench
