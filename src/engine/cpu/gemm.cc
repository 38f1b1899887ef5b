#include "engine/cpu/gemm.h"

#include <algorithm>

#ifdef TANDEM_HAVE_BLAS
#include <cblas.h>
#endif

namespace tandem::engine::cpu {

bool HaveBlas() {
#ifdef TANDEM_HAVE_BLAS
  return true;
#else
  return false;
#endif
}

void MatMulTransB(const float* a, int m, int k, const float* w, int n, const float* bias,
                  float* c) {
#ifdef TANDEM_HAVE_BLAS
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, w, k, 0.0f, c, n);
#else
  // Blocks of output columns share the weight rows they read across every row of A.
  constexpr int kColBlock = 64;
#pragma omp parallel for schedule(static)
  for (int nb = 0; nb < n; nb += kColBlock) {
    const int n_end = std::min(n, nb + kColBlock);
    for (int i = 0; i < m; ++i) {
      const float* ai = a + static_cast<long>(i) * k;
      for (int j = nb; j < n_end; ++j) {
        const float* wj = w + static_cast<long>(j) * k;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int p = 0; p < k; ++p) acc += ai[p] * wj[p];
        c[static_cast<long>(i) * n + j] = acc;
      }
    }
  }
#endif
  if (bias != nullptr) {
    for (int i = 0; i < m; ++i) {
      float* ci = c + static_cast<long>(i) * n;
      for (int j = 0; j < n; ++j) ci[j] += bias[j];
    }
  }
}

}  // namespace tandem::engine::cpu
