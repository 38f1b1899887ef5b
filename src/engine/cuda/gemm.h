// Matrix products through cuBLASLt: C[M×N] = A[M×K] · W[N×K]ᵀ (+ nothing: biases are added by
// the caller), bf16 operands, fp32 accumulation, bf16 or fp32 output, row-major everywhere.
// The heuristic's algorithm is cached per (M, N, K, output type).
//
// Split-K style reductions are excluded from the heuristic's choice, so a row's result does not
// depend on how many other rows share the product (a request's tokens must not depend on the
// batch it ran in).
//
// Thread safety: not thread-safe (one engine thread); products run on the stream passed in.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

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

  static StatusOr<std::unique_ptr<Gemm>> Create();
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // a: bf16 [m, k]; w: bf16 [n, k]; c: [m, n] of `out` type. Pointers 16-byte aligned.
  Status Run(const void* a, const void* w, void* c, int m, int n, int k, GemmOut out,
             cudaStream_t stream);

 private:
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t w = nullptr, a = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo;
  };
  using Key = std::tuple<int, int, int, GemmOut>;

  Gemm() = default;
  StatusOr<Plan*> GetPlan(int m, int n, int k, GemmOut out);

  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
  std::map<Key, Plan> plans_;
};

}  // namespace tandem::engine::cuda
