// Matrix products through cuBLASLt: C[M×N] = A[M×K] · W[N×K]ᵀ (+ nothing: biases are added by
// the caller), bf16 operands, fp32 accumulation, bf16 or fp32 output, row-major everywhere.
// The heuristic's algorithm is cached per (M, N, K, output type).
//
// By default split-K style reductions are excluded from the heuristic's choice, so a row's result
// does not depend on how many other rows share the product (a prompt's KV does not depend on its
// chunking or on the batch). `allow_split_k` lifts that for decode batches too large for the
// skinny kernel (skinny_gemm.h) and too small to fill the chip without splitting k.
//
// Thread safety: not thread-safe (one engine thread); products run on the stream passed in.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "engine/cuda/cuda_util.h"
#include "tandem/status.h"

namespace tandem::engine::cuda {

enum class GemmOut { kBf16, kF32 };

class Gemm {
 public:
  static constexpr size_t kWorkspaceBytes = 32u << 20;
  static constexpr uint32_t kMinAlignment = 16;  // bytes, of every operand (checked)

  static StatusOr<std::unique_ptr<Gemm>> Create();
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // a: bf16 [m, k]; w: bf16 [n, k]; c: [m, n] of `out` type. Pointers 16-byte aligned
  // (InvalidArgument otherwise).
  Status Run(const void* a, const void* w, void* c, int m, int n, int k, GemmOut out,
             cudaStream_t stream, bool allow_split_k = false);

  // The backend's product over a step's rows, whose first `single` are rows of single-token
  // (decode) sequences: those go through the skinny kernel (skinny_gemm.h) when it takes them
  // (batch-invariant), the rest through cuBLASLt without split-K; a decode batch too large for
  // the skinny kernel (up to kSplitKMaxRows) lets cuBLASLt split k.
  Status RunRows(const void* a, const void* w, void* c, int rows, int single, int n, int k,
                 GemmOut out, cudaStream_t stream);
  static constexpr int kSplitKMaxRows = 256;

  // An MLP's gate_up product and SiLU in one pass for a step whose `rows` are all single-token
  // rows that the skinny kernel takes: act [rows, n] (bf16) = silu(a·gateᵀ) · (a·upᵀ), with w the
  // [2n, k] gate_up (the same bits as RunRows then LaunchSiluMul). False, with nothing launched,
  // for any other step.
  StatusOr<bool> TryRunSiluGated(const void* a, const void* w, void* act, int rows, int single,
                                 int n, int k, cudaStream_t stream);

 private:
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t w = nullptr, a = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo;
  };
  using Key = std::tuple<int, int, int, GemmOut, bool>;

  Gemm() = default;
  StatusOr<Plan*> GetPlan(int m, int n, int k, GemmOut out, bool allow_split_k);

  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
  std::map<Key, Plan> plans_;
};

}  // namespace tandem::engine::cuda
