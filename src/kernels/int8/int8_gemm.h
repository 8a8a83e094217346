// LLM.int8() (Dettmers et al., arXiv 2208.07339): y[m,n] = x[m,k]·W[n,k]ᵀ with vector-wise int8.
//
//   Weights: int8 per output row, absmax scale s_r = max_c |W[r,c]| / 127, q = round(W / s_r).
//   Activations, per call: the outlier input features are the columns c where some row has
//     |x[t,c]| >= threshold (default 6.0; +inf disables the decomposition: plain int8). Every
//     other column is quantized per token, either
//       absmax:     s_t = max |x[t,c]| / 127, xq = round(x / s_t) in [-127, 127], or
//       zero point: s_t = (hi − lo) / 255 with lo = min(0, min x), hi = max(0, max x) over the
//                   regular columns, z_t = −128 − round(lo / s_t), xq = round(x / s_t) + z_t in
//                   [-128, 127] (x ≈ s_t·(xq − z_t); the paper's better variant: 255 steps over
//                   the row's actual range instead of 254 over a symmetric one).
//   y[t,r] = s_t·s_r·(Σ_c xq[t,c]·q[r,c] − z_t·Σ_c q[r,c])   (exact integer arithmetic; outlier
//                                                            columns hold xq = z_t: no share)
//          + Σ_{c outlier} x[t,c]·W[r,c]   (fp32, against the kept fp16 copy of W, or the
//                                           dequantized q·s_r when none was kept)
// Error against the exact product, per output (u = 2^-24):
//   |y − x·Wᵀ| <= Σ_{c regular} (|x_c|·s_r/2 + |q_rc·s_r|·s_t/2) + Σ_{c outlier} |x_c|·|W_rc|·2^-11
//                 + γ_k·Σ_c |x_c|·|W_rc| + 4u·|y|
// (each rounded weight/activation is within half a step, also at the zero-point clamp; the fp16
// copy is within 2^-11 relative; the fp32 outlier sum and the rescale round). The int32 sum
// cannot overflow for k < 2^31 / (128·127) ≈ 132k (checked).
//
// Measured on SmolLM2-135M (docs/quality.md): the fp16 copy for the outlier columns and the zero
// point each halve the KL to the fp32 model; the copy costs 2 bytes per weight beside the int8
// codes (keep_fp16 = false: 1 byte, the outlier columns then use the dequantized int8 weights).
//
// The AVX2 path sign-extends int8 to int16 and uses vpmaddwd (madd_epi16): pairs of products
// ≤ 2·127² fit int32 with no saturation. vpmaddubsw (maddubs) would take twice the bytes per
// instruction but multiplies u8×s8 into saturating int16 pairs: 2·255·127 overflows int16.
// The VNNI paths (AVX-VNNI, AVX512-VNNI) use vpdpbusd, u8×s8 summed in groups of four straight
// into int32 with no saturation: activations go unsigned as u = xq + 128 and the row sums correct
// it, Σ xq·q − z·Σq = Σ u·q − (128 + z)·Σq; exact, so every path gives the same bits. The int32
// sum of u·q is bounded by k·255·128: VNNI takes k ≤ 65793, longer rows use AVX2.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "core/cpu.h"
#include "core/status.h"
#include "core/thread_pool.h"

namespace lutq::kernels {

struct Int8Weights {
  int64_t n = 0;
  int64_t k = 0;
  std::vector<int8_t> q;  // [n][k]
  std::vector<float> scale;  // [n]: absmax / 127 (0 for an all-zero row)
  std::vector<int32_t> row_sum;  // [n]: Σ_c q[r,c] (the zero-point correction)
  std::vector<uint16_t> fp16;  // [n][k] fp16 copy of W for the outlier columns, or empty
};

// Quantizes W[n,k] (finite); keep_fp16 also keeps an fp16 copy for the outlier columns.
Result<Int8Weights> quantize_int8(const float* w, int64_t n, int64_t k, bool keep_fp16);

// Weights from stored codes (a lutq file): q[n*k] in [-127, 127], scale[n] finite >= 0, fp16
// empty or [n*k]; computes the row sums. Errors name what is wrong.
Result<Int8Weights> int8_from_codes(int64_t n, int64_t k, std::vector<int8_t> q, std::vector<float> scale,
                                    std::vector<uint16_t> fp16);

struct Int8Options {
  float threshold = 6.0f;  // outlier feature threshold; +inf: plain int8
  // Activations per token with a zero point (asymmetric, 255 steps over [min, max] of the row's
  // regular values) instead of absmax (254 steps over [-amax, amax]).
  bool zeropoint = false;
};

// The integer dot product's implementation.
enum class Int8Isa { kScalar, kAvx2, kAvxVnni, kAvx512Vnni };
const char* int8_isa_name(Int8Isa isa);
// Every path this CPU runs, scalar first; the last is the fastest.
std::vector<Int8Isa> int8_isas(const CpuFeatures& cpu);

// y[m,n] = x[m,k]·Wᵀ as above; isa is one of int8_isas(detect_cpu()). Errors: m < 1, null
// pointers, a non-finite activation, threshold not > 0.
Status int8_gemm(const Int8Weights& w, const float* x, int64_t m, float* y, const Int8Options& opt, ThreadPool& pool,
                 Int8Isa isa);

namespace int8_detail {
// Σ_c a[c]·b[c] over int16 activations and int8 weights, exact in int32 (k % 16 tail handled).
int32_t dot_ref(const int16_t* a, const int8_t* b, int64_t k);
// Precondition: the CPU has AVX2.
int32_t dot_avx2(const int16_t* a, const int8_t* b, int64_t k);
// Σ_c a[c]·b[c] over unsigned activations, exact in int32 for k ≤ 65793 (any tail length).
int32_t dot_u8_ref(const uint8_t* a, const int8_t* b, int64_t k);
// Preconditions: the CPU has AVX-VNNI / AVX512-VNNI (with F and BW).
int32_t dot_u8_avxvnni(const uint8_t* a, const int8_t* b, int64_t k);
int32_t dot_u8_avx512vnni(const uint8_t* a, const int8_t* b, int64_t k);
}  // namespace int8_detail

}  // namespace lutq::kernels
