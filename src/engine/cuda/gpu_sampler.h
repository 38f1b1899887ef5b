// Token sampling of the cuda backend on the device (kernel: sampling.{h,cu}): turns the engine's
// SamplingContexts into the kernel's rows and penalty entries, launches it on logits that stay on
// the device, and turns its results into GeneratedTokens. Same semantics and seeds as Sample()
// (engine/sampler.h); where the two can differ (rarely, by rounding) is listed in sampling.h.
//
// Use: Enqueue() on the stream that produced the logits, then Finish(), which waits for that work
// and returns the tokens; the caller may enqueue more work between the two (it runs after the
// sampling) but must call Finish() before the next Enqueue(). Only the small result array comes
// back to the host (one device-to-host copy into pinned memory).
//
// Device memory: the kernel's scratch, 12 bytes × vocab × rows (98 MB for 64 rows of 128256),
// plus parameters and results; buffers grow to the largest batch seen and stay.
//
// Top logprobs: the engine accepts at most 20 (kMaxTopLogprobs, checked at Submit); a larger
// request is clamped to 20.
//
// Thread safety: not thread-safe; the engine thread owns it. It allocates on the device current at
// Create() and must be used with that device current.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "engine/cuda/cuda_util.h"
#include "engine/cuda/sampling.h"
#include "engine/sampler.h"
#include "tandem/engine.h"
#include "tandem/status.h"

namespace tandem::engine::cuda {

// Page-locked host memory (cudaMallocHost), for asynchronous copies. Empty after a move.
class PinnedHostBuffer {
 public:
  PinnedHostBuffer() = default;
  ~PinnedHostBuffer();
  PinnedHostBuffer(PinnedHostBuffer&& other) noexcept { *this = std::move(other); }
  PinnedHostBuffer& operator=(PinnedHostBuffer&& other) noexcept;
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return bytes_; }
  // Grows to at least `bytes`; contents are lost when it reallocates. No copy may be in flight.
  Status Reserve(size_t bytes);

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

class GpuSampler {
 public:
  // One token to sample: from row `logits_row` of the logits, with `context` (which must stay
  // valid until Finish returns).
  struct Row {
    int logits_row = 0;
    const SamplingContext* context = nullptr;
  };

  // Buffers grow on demand; `expected_rows` and `expected_vocab` size them up front.
  static StatusOr<std::unique_ptr<GpuSampler>> Create(int expected_rows = 0,
                                                      int expected_vocab = 0);

  GpuSampler(const GpuSampler&) = delete;
  GpuSampler& operator=(const GpuSampler&) = delete;

  // Enqueues on `stream`: the upload of the rows' parameters, the sampling kernel on `logits`
  // (fp32, row-major [*, vocab] on the device; vocab 1 .. kMaxSampleVocab) and the copy of the
  // results back. `logits` must stay valid until the stream passes that point. Work enqueued on
  // `stream` before it (the lm_head GEMM) is what it reads; no other synchronisation is needed.
  Status Enqueue(const float* logits, int vocab, std::span<const Row> rows, cudaStream_t stream);

  // Waits for the last Enqueue's work (its event, not the whole stream) and resizes `tokens` to
  // its rows, in their order: the token, and the logprob and top logprobs when the row's request
  // asked for logprobs.
  Status Finish(std::vector<GeneratedToken>* tokens);

  // Enqueue, then Finish.
  Status Sample(const float* logits, int vocab, std::span<const Row> rows, cudaStream_t stream,
                std::vector<GeneratedToken>* tokens);

 private:
  explicit GpuSampler(CudaEvent done);

  Status Reserve(int rows, int vocab, size_t penalty_entries);
  // Appends the penalty entries of `ctx` (sorted by token) to penalties_.
  void AppendPenalties(const SamplingContext& ctx, int vocab);

  CudaEvent done_;   // recorded after the results' copy
  int pending_ = 0;  // requests of the last Enqueue not yet Finished

  // Host staging: rows then penalty entries (one upload), and results (one download).
  std::vector<SampleRow> rows_;
  std::vector<PenaltyEntry> penalties_;
  std::vector<bool> wants_logprobs_;
  PinnedHostBuffer upload_;
  PinnedHostBuffer download_;
  DeviceBuffer device_params_;
  DeviceBuffer device_results_;
  DeviceBuffer scratch_;

  // Per-token marks for building penalty entries without sorting the prompt (reset after use).
  std::vector<int32_t> output_count_;
  std::vector<uint8_t> mark_;  // 1: touched, 2: repeated
  std::vector<int32_t> touched_;
};

}  // namespace tandem::engine::cuda
