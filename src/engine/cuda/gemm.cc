#include "engine/cuda/gemm.h"

#include <cstdint>
#include <string>

#include "common/status_macros.h"
#include "engine/cuda/skinny_gemm.h"

namespace tandem::engine::cuda {
namespace {

Status BlasStatus(cublasStatus_t status, std::string_view what) {
  if (status == CUBLAS_STATUS_SUCCESS) return OkStatus();
  return InternalError(std::string(what) + ": cublasLt status " + std::to_string(status));
}

#define TANDEM_CUBLAS_RETURN_IF_ERROR(expr) TANDEM_RETURN_IF_ERROR(BlasStatus((expr), #expr))

}  // namespace

StatusOr<std::unique_ptr<Gemm>> Gemm::Create() {
  auto gemm = std::unique_ptr<Gemm>(new Gemm());
  TANDEM_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&gemm->handle_));
  TANDEM_ASSIGN_OR_RETURN(gemm->workspace_, DeviceBuffer::Create(kWorkspaceBytes));
  return gemm;
}

Gemm::~Gemm() {
  for (auto& [key, plan] : plans_) {
    if (plan.op) cublasLtMatmulDescDestroy(plan.op);
    if (plan.w) cublasLtMatrixLayoutDestroy(plan.w);
    if (plan.a) cublasLtMatrixLayoutDestroy(plan.a);
    if (plan.c) cublasLtMatrixLayoutDestroy(plan.c);
  }
  if (handle_) cublasLtDestroy(handle_);
}

StatusOr<Gemm::Plan*> Gemm::GetPlan(int m, int n, int k, GemmOut out, bool allow_split_k) {
  const Key key{m, n, k, out, allow_split_k};
  if (auto it = plans_.find(key); it != plans_.end()) return &it->second;
  // cuBLASLt is column-major: row-major C[m, n] is column-major Cᵀ[n, m] = W · Aᵀ, with W stored
  // as a column-major [k, n] matrix (transposed) and A as a column-major [k, m] one ("TN").
  Plan plan;
  auto cleanup_on_error = [&](Status s) {
    if (plan.op) cublasLtMatmulDescDestroy(plan.op);
    if (plan.w) cublasLtMatrixLayoutDestroy(plan.w);
    if (plan.a) cublasLtMatrixLayoutDestroy(plan.a);
    if (plan.c) cublasLtMatrixLayoutDestroy(plan.c);
    return s;
  };
  Status s = [&]() -> Status {
    TANDEM_CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
    TANDEM_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof(trans)));
    TANDEM_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans, sizeof(no_trans)));
    const cudaDataType_t out_type = out == GemmOut::kBf16 ? CUDA_R_16BF : CUDA_R_32F;
    TANDEM_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan.w, CUDA_R_16BF, k, n, k));
    TANDEM_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_16BF, k, m, k));
    TANDEM_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan.c, out_type, n, m, n));

    cublasLtMatmulPreference_t pref = nullptr;
    TANDEM_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
    const size_t workspace = kWorkspaceBytes;
    // No split-K reductions: keeps each row's result independent of m (batch invariance).
    const uint32_t reduction =
        allow_split_k ? CUBLASLT_REDUCTION_SCHEME_MASK : CUBLASLT_REDUCTION_SCHEME_NONE;
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace));
    // Operands may start at a row offset of a larger buffer: promise 16 bytes, not 256.
    const uint32_t alignment = kMinAlignment;
    for (const auto attribute : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                 CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                 CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                 CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
      if (st == CUBLAS_STATUS_SUCCESS) {
        st = cublasLtMatmulPreferenceSetAttribute(pref, attribute, &alignment, sizeof(alignment));
      }
    }
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                &reduction, sizeof(reduction));
    }
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulAlgoGetHeuristic(handle_, plan.op, plan.w, plan.a, plan.c, plan.c, pref, 1,
                                          &result, &found);
    }
    if (st == CUBLAS_STATUS_SUCCESS && found == 0) {
      // No reduction-free algorithm for this shape: take any (batch invariance may then suffer).
      const uint32_t any = CUBLASLT_REDUCTION_SCHEME_MASK;
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                &any, sizeof(any));
      if (st == CUBLAS_STATUS_SUCCESS) {
        st = cublasLtMatmulAlgoGetHeuristic(handle_, plan.op, plan.w, plan.a, plan.c, plan.c, pref,
                                            1, &result, &found);
      }
    }
    cublasLtMatmulPreferenceDestroy(pref);
    TANDEM_CUBLAS_RETURN_IF_ERROR(st);
    if (found == 0) {
      return InternalError("cublasLt found no algorithm for m=" + std::to_string(m) +
                           " n=" + std::to_string(n) + " k=" + std::to_string(k));
    }
    plan.algo = result.algo;
    return OkStatus();
  }();
  if (!s.ok()) return cleanup_on_error(s);
  return &plans_.emplace(key, plan).first->second;
}

Status Gemm::Run(const void* a, const void* w, void* c, int m, int n, int k, GemmOut out,
                 cudaStream_t stream, bool allow_split_k) {
  if (m == 0) return OkStatus();
  if ((reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(w) |
       reinterpret_cast<uintptr_t>(c)) % kMinAlignment != 0) {
    return InvalidArgumentError("gemm operands must be " + std::to_string(kMinAlignment) +
                                "-byte aligned");
  }
  TANDEM_ASSIGN_OR_RETURN(Plan * plan, GetPlan(m, n, k, out, allow_split_k));
  const float alpha = 1.0f, beta = 0.0f;
  TANDEM_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle_, plan->op, &alpha, w, plan->w, a, plan->a,
                                               &beta, c, plan->c, c, plan->c, &plan->algo,
                                               workspace_.data(), kWorkspaceBytes, stream));
  return OkStatus();
}

StatusOr<bool> Gemm::TryRunSiluGated(const void* a, const void* w, void* act, int rows,
                                     int single, int n, int k, cudaStream_t stream) {
  if (rows != single || !SkinnyGemmSupports(rows, k)) return false;
  SkinnyGemmParams p;
  p.a = static_cast<const __nv_bfloat16*>(a);
  p.w = static_cast<const __nv_bfloat16*>(w);
  p.c = act;
  p.m = rows;
  p.n = n;
  p.k = k;
  p.gated = true;
  const cudaError_t error = LaunchSkinnyGemm(p, stream);
  if (error != cudaSuccess) return CudaStatus(error, "skinny gemm (SiLU-gated)");
  return true;
}

Status Gemm::RunRows(const void* a, const void* w, void* c, int rows, int single, int n, int k,
                     GemmOut out, cudaStream_t stream) {
  const size_t out_bytes = out == GemmOut::kBf16 ? 2 : 4;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const void* rest_a = static_cast<const char*>(a) + static_cast<size_t>(single) * k * 2;
  void* rest_c = static_cast<char*>(c) + static_cast<size_t>(single) * n * out_bytes;
  if (single > 0 && SkinnyGemmSupports(single, k) &&
      (rows == single || (aligned(rest_a) && aligned(rest_c)))) {
    SkinnyGemmParams p;
    p.a = static_cast<const __nv_bfloat16*>(a);
    p.w = static_cast<const __nv_bfloat16*>(w);
    p.c = c;
    p.c_f32 = out == GemmOut::kF32;
    p.m = single;
    p.n = n;
    p.k = k;
    const cudaError_t error = LaunchSkinnyGemm(p, stream);
    if (error != cudaSuccess) return CudaStatus(error, "skinny gemm");
    return Run(rest_a, w, rest_c, rows - single, n, k, out, stream);
  }
  // A decode batch past the skinny kernel: let cuBLASLt split k, or most of the chip idles.
  return Run(a, w, c, rows, n, k, out, stream, single == rows && rows <= kSplitKMaxRows);
}

}  // namespace tandem::engine::cuda
