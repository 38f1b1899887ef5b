// Matrix products with few rows (decode steps of up to kMaxSkinnyRows sequences):
// C[m×n] = A[m×k] · W[n×k]ᵀ, bf16 operands, fp32 accumulation, bf16 or fp32 output, row-major.
// At m ≤ 8 the product is bound by reading W; this kernel streams W once (one CTA per 16 rows of
// W, its 8 warps splitting k, mma.sync with W as the 16-row operand and A's rows as the 8
// columns), where cuBLASLt's reduction-free algorithms leave most of the chip idle.
//
// Batch invariance: row i of C depends only on row i of A and on W (the k partition and every
// reduction order are fixed by k alone; an mma's columns do not mix), so a sequence's results do
// not depend on m.
//
// Requirements: 1 ≤ m ≤ kMaxSkinnyRows, k a multiple of 8, a and w 16-byte aligned (else
// cudaErrorNotSupported / cudaErrorInvalidValue, before any launch). Capturable in a graph.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tandem::engine::cuda {

inline constexpr int kMaxSkinnyRows = 8;

struct SkinnyGemmParams {
  const __nv_bfloat16* a = nullptr;  // [m, k]
  const __nv_bfloat16* w = nullptr;  // [n, k]
  void* c = nullptr;                 // [m, n], bf16 or fp32
  bool c_f32 = false;
  int m = 0;
  int n = 0;
  int k = 0;
  // SiLU-gated (an MLP's gate_up): w holds 2n rows, the gate's [0, n) then the up's [n, 2n), and
  // c (bf16) gets silu(gate) · up of the bf16-rounded products, as LaunchSiluMul computes it from
  // a bf16 gate_up.
  bool gated = false;
};

// Whether LaunchSkinnyGemm takes these sizes.
bool SkinnyGemmSupports(int m, int k);

cudaError_t LaunchSkinnyGemm(const SkinnyGemmParams& p, cudaStream_t stream);

}  // namespace tandem::engine::cuda
