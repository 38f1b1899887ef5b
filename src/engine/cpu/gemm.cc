#include "engine/cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <mutex>

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
  // One thread pool for the whole step: OpenMP threads each run a single-threaded sgemm on a
  // slice of the output columns. Letting OpenBLAS spawn its own threads next to OpenMP's
  // oversubscribes the cores (both spin-wait) and made decode steps several times slower.
  static std::once_flag single_threaded_blas;
  std::call_once(single_threaded_blas, [] { openblas_set_num_threads(1); });
#pragma omp parallel
  {
    const int threads = omp_get_num_threads();
    const int t = omp_get_thread_num();
    // Slices of whole 16-column groups keep the sgemm kernels on their fast path.
    const int groups = (n + 15) / 16;
    const int n0 = std::min(n, groups * t / threads * 16);
    const int n1 = std::min(n, groups * (t + 1) / threads * 16);
    if (n1 > n0) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n1 - n0, k, 1.0f, a, k,
                  w + static_cast<long>(n0) * k, k, 0.0f, c + n0, n);
    }
  }
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
