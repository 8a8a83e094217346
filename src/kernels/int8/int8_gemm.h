// LLM.int8() (Dettmers et al., arXiv 2208.07339): y[m,n] = x[m,k]·W[n,k]ᵀ with vector-wise int8.
//
//   Weights: int8 per output row, absmax scale s_r = max_c |W[r,c]| / 127, q = round(W / s_r).
//   Activations, per call: the outlier input features are the columns c where some row has
//     |x[t,c]| >= threshold (default 6.0; +inf disables the decomposition: plain int8). Every
//     other column is quantized per token: s_t = max_c |x[t,c]| / 127 over the non-outlier
//     columns, xq = round(x / s_t).
//   y[t,r] = s_t·s_r·Σ_{c regular} xq[t,c]·q[r,c]   (exact int32 accumulation)
//          + Σ_{c outlier} x[t,c]·W[r,c]            (fp32, against the kept fp32 weights, or the
//                                                    dequantized q·s_r when none were kept)
// Error against the exact product, per output (u = 2^-24):
//   |y − x·Wᵀ| <= Σ_{c regular} (|x_c|·s_r/2 + |q_rc·s_r|·s_t/2) + γ_k·Σ_c |x_c|·|W_rc| + 4u·|y|
// (each rounded weight/activation is within half a step; the fp32 outlier sum and the rescale
// round). The int32 sum cannot overflow for k < 2^31 / 127² ≈ 133k (checked).
//
// The AVX2 path sign-extends int8 to int16 and uses vpmaddwd (madd_epi16): pairs of products
// ≤ 2·127² fit int32 with no saturation. vpmaddubsw (maddubs) would take twice the bytes per
// instruction but multiplies u8×s8 into saturating int16 pairs: 2·255·127 overflows int16, and
// making x unsigned (x + 128) needs a correction term per row; not worth it here.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"

namespace lutq::kernels {

struct Int8Weights {
  int64_t n = 0;
  int64_t k = 0;
  std::vector<int8_t> q;  // [n][k]
  std::vector<float> scale;  // [n]: absmax / 127 (0 for an all-zero row)
  std::shared_ptr<const std::vector<float>> fp32;  // [n][k] for the outlier columns, or null
};

// Quantizes W[n,k] (finite). keep_fp32 (may be null) is kept for the outlier columns.
Result<Int8Weights> quantize_int8(const float* w, int64_t n, int64_t k,
                                  std::shared_ptr<const std::vector<float>> keep_fp32);

struct Int8Options {
  float threshold = 6.0f;  // outlier feature threshold; +inf: plain int8
};

// y[m,n] = x[m,k]·Wᵀ as above. use_avx2: the caller checked detect_cpu().avx2. Errors: m < 1,
// null pointers, a non-finite activation, threshold not > 0.
Status int8_gemm(const Int8Weights& w, const float* x, int64_t m, float* y, const Int8Options& opt, ThreadPool& pool,
                 bool use_avx2);

namespace int8_detail {
// Σ_c a[c]·b[c] over int16 activations and int8 weights, exact in int32 (k % 16 tail handled).
int32_t dot_ref(const int16_t* a, const int8_t* b, int64_t k);
// Precondition: the CPU has AVX2.
int32_t dot_avx2(const int16_t* a, const int8_t* b, int64_t k);
}  // namespace int8_detail

}  // namespace lutq::kernels
