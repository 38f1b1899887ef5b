#include "engine/cuda/gpu_sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "common/status_macros.h"

namespace tandem::engine::cuda {
namespace {

constexpr uint8_t kTouched = 1;
constexpr uint8_t kRepeated = 2;

size_t AlignUp(size_t bytes, size_t alignment) {
  return (bytes + alignment - 1) / alignment * alignment;
}

}  // namespace

PinnedHostBuffer::~PinnedHostBuffer() {
  if (data_ != nullptr) cudaFreeHost(data_);
}

PinnedHostBuffer& PinnedHostBuffer::operator=(PinnedHostBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFreeHost(data_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

Status PinnedHostBuffer::Reserve(size_t bytes) {
  if (bytes <= bytes_) return OkStatus();
  if (data_ != nullptr) {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaFreeHost(data_));
    data_ = nullptr;
    bytes_ = 0;
  }
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMallocHost(&data_, bytes));
  bytes_ = bytes;
  return OkStatus();
}

StatusOr<std::unique_ptr<GpuSampler>> GpuSampler::Create(int expected_rows, int expected_vocab) {
  TANDEM_ASSIGN_OR_RETURN(CudaEvent done, CudaEvent::Create(/*timing=*/false));
  std::unique_ptr<GpuSampler> sampler(new GpuSampler(std::move(done)));
  if (expected_rows > 0 && expected_vocab > 0 && expected_vocab <= kMaxSampleVocab) {
    TANDEM_RETURN_IF_ERROR(sampler->Reserve(expected_rows, expected_vocab, 0));
  }
  return sampler;
}

GpuSampler::GpuSampler(CudaEvent done) : done_(std::move(done)) {}

Status GpuSampler::Reserve(int rows, int vocab, size_t penalty_entries) {
  const size_t rows_bytes = AlignUp(static_cast<size_t>(rows) * sizeof(SampleRow), 256);
  const size_t params_bytes = rows_bytes + penalty_entries * sizeof(PenaltyEntry);
  const size_t results_bytes = static_cast<size_t>(rows) * sizeof(SampleResult);
  TANDEM_RETURN_IF_ERROR(upload_.Reserve(params_bytes));
  TANDEM_RETURN_IF_ERROR(download_.Reserve(results_bytes));
  TANDEM_RETURN_IF_ERROR(device_params_.Reserve(params_bytes));
  TANDEM_RETURN_IF_ERROR(device_results_.Reserve(results_bytes));
  TANDEM_RETURN_IF_ERROR(scratch_.Reserve(SampleScratchBytes(vocab, rows)));
  return OkStatus();
}

void GpuSampler::AppendPenalties(const SamplingContext& ctx, int vocab) {
  const SamplingParams& params = *ctx.params;
  // The CPU's conditions (ApplyPenalties in sampler.cc): what does not apply gets no entry.
  const bool repetition = params.repetition_penalty != 1.0f && params.repetition_penalty > 0.0f;
  const bool frequency_presence =
      (params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f) &&
      !ctx.output_tokens.empty();
  if (!repetition && !frequency_presence) return;
  if (mark_.size() < static_cast<size_t>(vocab)) {
    mark_.resize(static_cast<size_t>(vocab), 0);
    output_count_.resize(static_cast<size_t>(vocab), 0);
  }
  touched_.clear();
  auto touch = [&](int32_t t) {
    TANDEM_CHECK(t >= 0 && t < vocab);  // Validated at Submit.
    if (mark_[static_cast<size_t>(t)] == 0) {
      mark_[static_cast<size_t>(t)] = kTouched;
      touched_.push_back(t);
    }
  };
  if (repetition) {
    for (int32_t t : ctx.prompt_tokens) {
      touch(t);
      mark_[static_cast<size_t>(t)] |= kRepeated;
    }
    for (int32_t t : ctx.output_tokens) {
      touch(t);
      mark_[static_cast<size_t>(t)] |= kRepeated;
    }
  }
  if (frequency_presence) {
    for (int32_t t : ctx.output_tokens) {
      touch(t);
      ++output_count_[static_cast<size_t>(t)];
    }
  }
  // Unique tokens only are sorted (far fewer than a long prompt's tokens, usually).
  std::sort(touched_.begin(), touched_.end());
  for (int32_t t : touched_) {
    const size_t i = static_cast<size_t>(t);
    penalties_.push_back(PenaltyEntry{t, output_count_[i], (mark_[i] & kRepeated) != 0 ? 1 : 0});
    output_count_[i] = 0;
    mark_[i] = 0;
  }
}

Status GpuSampler::Enqueue(const float* logits, int vocab, std::span<const Row> requests,
                           cudaStream_t stream) {
  TANDEM_CHECK(pending_ == 0);  // Finish the previous Enqueue first.
  if (requests.empty()) return OkStatus();
  if (vocab < 1 || vocab > kMaxSampleVocab) {
    return InvalidArgumentError("gpu sampler: vocabulary of " + std::to_string(vocab) +
                                " tokens, the kernel takes 1 to " +
                                std::to_string(kMaxSampleVocab));
  }
  if (requests.size() > static_cast<size_t>(std::numeric_limits<int>::max() / 2)) {
    return InvalidArgumentError("gpu sampler: too many rows");
  }
  const int n = static_cast<int>(requests.size());
  rows_.assign(requests.size(), SampleRow{});
  penalties_.clear();
  wants_logprobs_.assign(requests.size(), false);
  for (int i = 0; i < n; ++i) {
    const Row& request = requests[static_cast<size_t>(i)];
    TANDEM_CHECK(request.context != nullptr && request.context->params != nullptr);
    const SamplingContext& ctx = *request.context;
    const SamplingParams& params = *ctx.params;
    SampleRow& row = rows_[static_cast<size_t>(i)];
    row.logits_row = request.logits_row;
    row.temperature = params.temperature;
    row.top_p = params.top_p;
    row.top_k = params.top_k;
    // As the CPU computes it: double(T) * std::log(float) (sampler.cc, SampleFiltered).
    row.min_p_offset = params.min_p > 0.0f
                           ? static_cast<double>(params.temperature) * std::log(params.min_p)
                           : -std::numeric_limits<double>::infinity();
    row.repetition_penalty = params.repetition_penalty;
    row.presence_penalty = params.presence_penalty;
    row.frequency_penalty = params.frequency_penalty;
    row.seed = ctx.seed;
    row.draw_index = ctx.output_tokens.size();
    row.penalty_begin = static_cast<int32_t>(penalties_.size());
    AppendPenalties(ctx, vocab);
    if (penalties_.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
      return InvalidArgumentError("gpu sampler: too many penalty entries");
    }
    row.penalty_count = static_cast<int32_t>(penalties_.size()) - row.penalty_begin;
    row.num_top_logprobs =
        params.logprobs ? std::clamp(params.top_logprobs, 0, kMaxTopLogprobs) : -1;
    wants_logprobs_[static_cast<size_t>(i)] = params.logprobs;
  }

  TANDEM_RETURN_IF_ERROR(Reserve(n, vocab, penalties_.size()));
  const size_t rows_bytes = AlignUp(rows_.size() * sizeof(SampleRow), 256);
  const size_t penalty_bytes = penalties_.size() * sizeof(PenaltyEntry);
  auto* upload = static_cast<unsigned char*>(upload_.data());
  std::memcpy(upload, rows_.data(), rows_.size() * sizeof(SampleRow));
  if (penalty_bytes > 0) std::memcpy(upload + rows_bytes, penalties_.data(), penalty_bytes);
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
      device_params_.data(), upload, rows_bytes + penalty_bytes, cudaMemcpyHostToDevice, stream));
  // Past this point a failure waits for the upload, so that the next Enqueue may reuse its buffer.
  auto fail = [stream](Status status) {
    (void)cudaStreamSynchronize(stream);
    return status;
  };
  SampleBatchParams p;
  p.logits = logits;
  p.logits_stride = vocab;
  p.vocab = vocab;
  p.rows = device_params_.as<SampleRow>();
  p.num_rows = n;
  p.penalties =
      penalty_bytes > 0
          ? reinterpret_cast<const PenaltyEntry*>(device_params_.as<unsigned char>() + rows_bytes)
          : nullptr;
  p.results = device_results_.as<SampleResult>();
  p.scratch = scratch_.data();
  if (const cudaError_t error = LaunchSample(p, stream); error != cudaSuccess) {
    return fail(CudaStatus(error, "LaunchSample"));
  }
  if (const cudaError_t error = cudaMemcpyAsync(download_.data(), device_results_.data(),
                                                static_cast<size_t>(n) * sizeof(SampleResult),
                                                cudaMemcpyDeviceToHost, stream);
      error != cudaSuccess) {
    return fail(CudaStatus(error, "sampling results copy"));
  }
  if (Status recorded = done_.Record(stream); !recorded.ok()) return fail(std::move(recorded));
  pending_ = n;
  return OkStatus();
}

Status GpuSampler::Finish(std::vector<GeneratedToken>* tokens) {
  const int n = std::exchange(pending_, 0);
  tokens->resize(static_cast<size_t>(n));
  if (n == 0) return OkStatus();
  TANDEM_RETURN_IF_ERROR(done_.Synchronize());
  const auto* results = static_cast<const SampleResult*>(download_.data());
  for (int i = 0; i < n; ++i) {
    const SampleResult& r = results[i];
    GeneratedToken& out = (*tokens)[static_cast<size_t>(i)];
    out = GeneratedToken{};
    out.token = r.token;
    if (!wants_logprobs_[static_cast<size_t>(i)]) continue;
    out.logprob = r.logprob;
    const int num_top = std::clamp(r.num_top, 0, kMaxTopLogprobs);
    out.top_logprobs.reserve(static_cast<size_t>(num_top));
    for (int j = 0; j < num_top; ++j) {
      out.top_logprobs.push_back(TokenLogprob{r.top_tokens[j], r.top_logprobs[j]});
    }
  }
  return OkStatus();
}

Status GpuSampler::Sample(const float* logits, int vocab, std::span<const Row> rows,
                          cudaStream_t stream, std::vector<GeneratedToken>* tokens) {
  TANDEM_RETURN_IF_ERROR(Enqueue(logits, vocab, rows, stream));
  return Finish(tokens);
}

}  // namespace tandem::engine::cuda
