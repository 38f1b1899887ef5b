// fp32 matrix product for the CPU backend: C[M x N] = A[M x K] * W[N x K]^T (+ bias), W being a
// weight in Hugging Face's [out, in] layout. Uses OpenBLAS when the build found it, else a
// blocked OpenMP loop.
//
// Thread safety: reentrant.
#pragma once

namespace tandem::engine::cpu {

void MatMulTransB(const float* a, int m, int k, const float* w, int n, const float* bias,
                  float* c);

// True when the build links a BLAS library.
bool HaveBlas();

}  // namespace tandem::engine::cpu
