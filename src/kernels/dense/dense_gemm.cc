#include "kernels/dense/dense_gemm.h"

namespace lutq::kernels {

void dense_gemm(const DenseWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool, bool use_avx2) {
  if (use_avx2) {
    dense_gemm_avx2(w, x, m, y, pool);
  } else {
    dense_gemm_scalar(w, x, m, y, pool);
  }
}

void dense_gemm_scalar(const DenseWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  pool.parallel_for(w.n, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t mm = 0; mm < m; ++mm) {
      const float* xr = x + mm * w.k;
      for (int64_t r = r0; r < r1; ++r) {
        const float* wr = w.data + r * w.k;
        float s = 0.0f;
        for (int64_t c = 0; c < w.k; ++c) s += wr[c] * xr[c];
        y[mm * w.n + r] = s;
      }
    }
  });
}

}  // namespace lutq::kernels
