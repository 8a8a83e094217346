// Dense fp32 GEMM: y[m,n] = x[m,k] · W[n,k]^T with W row-major. The baseline the LUT kernels are
// measured against (lutq bench-kernels) and the kernel of the fp32 layers of real models.
//
// Every variant splits the n output features over the pool's threads. Rounding: each output is a
// sum of k fp32 products in some order (FMA where the ISA has it), so
//   |y − y_exact| <= γ_k · Σ_c |w[r,c]·x[c]|,   γ_k = k·u/(1 − k·u), u = 2^-24.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace lutq::kernels {

// A row-major fp32 weight matrix W[n,k] that the caller owns.
struct DenseWeights {
  const float* data = nullptr;
  int64_t n = 0;  // output features (rows)
  int64_t k = 0;  // input features (columns)
};

// y[m,n] = x[m,k] · W^T; x rows have stride k, y rows stride n; m, n, k >= 1.
// Picks the AVX2+FMA kernel when use_avx2 (the caller asked detect_cpu() once), else the scalar one.
void dense_gemm(const DenseWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool, bool use_avx2);

// The scalar reference: one output at a time, products summed left to right.
void dense_gemm_scalar(const DenseWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool);

// AVX2+FMA: 4 weight rows × 1 activation row (8 accumulators) for GEMV; otherwise packed
// activation blocks and 4 weight rows × 3 activation rows per weight load (12 accumulators).
// Precondition: the CPU has AVX2, FMA and the OS saves ymm state.
void dense_gemm_avx2(const DenseWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool);

}  // namespace lutq::kernels
