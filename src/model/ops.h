// The non-GEMM pieces of a forward pass: RMSNorm, RoPE (both pairings), SwiGLU, residual add,
// softmax, and the dot / axpy loops of attention. Row-major fp32 throughout.
//
// One backend choice for every op: OpIsa is derived once from the model's kernels::Isa (the
// same choice that picks the BCQ backend), so asking for `scalar` runs scalar code in the dense
// GEMM, int8 GEMM, attention and norms alike, and each fast op can be checked against its scalar
// spec (ops_test.cc).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/cpu.h"
#include "core/thread_pool.h"
#include "kernels/int8/int8_gemm.h"
#include "kernels/kernel.h"
#include "model/config.h"

namespace lutq::model {

// The implementations the non-BCQ ops run, from the one ISA choice.
struct OpIsa {
  kernels::Isa isa = kernels::Isa::kScalar;  // the choice itself (BCQ backend)
  bool avx2 = false;                         // dense GEMM and attention loops: AVX2+FMA
  kernels::Int8Isa int8 = kernels::Int8Isa::kScalar;
};
// ref / scalar: scalar everywhere. avx2: AVX2 loops, int8 AVX2 or AVX-VNNI. avx512 and cuda
// (whose BCQ kernels run on the device): the best CPU paths this CPU has.
OpIsa op_isa(kernels::Isa isa, const CpuFeatures& cpu);
const char* op_isa_name(const OpIsa& ops);  // "scalar" or "avx2" (the dense / attention loops)

// out[i] = x[i] / sqrt(mean(x²) + eps) · w[i] for one row of n (sum of squares in double, as
// ggml). out may alias x.
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out);

// out[t] = rms_norm(x[t]) · w for the m rows of width e.
void rms_norm_rows(const float* x, const float* w, int64_t m, int64_t e, float eps, float* out);

// cos/sin of the rotation angles of the given positions, one row per position:
// cos[t*(dim/2) + i], sin[...] for pair i of positions[t], with angle
//   θ = (pos / linear_factor) · base^(−2i/dim) / freq_factor[i]   (computed in double).
struct RopeTable {
  int64_t half_dim = 0;
  std::vector<float> cos;
  std::vector<float> sin;
};
RopeTable make_rope_table(const RopeConfig& rope, std::span<const int64_t> positions);
// Consecutive positions start_pos .. start_pos+count−1.
RopeTable make_rope_table(const RopeConfig& rope, int64_t start_pos, int64_t count);

// Rotates the first 2·half_dim values of each of the `n_heads` heads (stride head_dim) of one
// token in place: kNormal pairs (x[2i], x[2i+1]), kNeox pairs (x[i], x[i+half_dim]).
void apply_rope(float* x, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin, int64_t half_dim,
                RopeMode mode = RopeMode::kNormal);

// In-place softmax of x[n] (max subtracted, exp, normalised).
void softmax(float* x, int64_t n);

// gate[i] = silu(gate[i]) · up[i] = gate/(1+e^−gate) · up.
void swiglu(float* gate, const float* up, int64_t n);

// y[i] += x[i].
void add_inplace(float* y, const float* x, int64_t n);

// Dot product and y += a·x; the AVX2 forms live in ops_avx2.cc (precondition: CPU has AVX2+FMA).
float dot_scalar(const float* a, const float* b, int64_t n);
void axpy_scalar(float a, const float* x, float* y, int64_t n);
float dot_avx2(const float* a, const float* b, int64_t n);
void axpy_avx2(float a, const float* x, float* y, int64_t n);

// out[i] = the IEEE fp16 in[i] widened (exact); F16C, part of the avx2 choice (core/cpu.h).
void fp16_to_fp32_avx2(const uint16_t* in, float* out, int64_t n);

// One attention head of one query row over n_keys positions of fp32 keys/values (rows of
// stride kv_stride, this head's columns at offset 0): scores = q·k_j · scale, softmax, out =
// Σ p_j v_j. scores: scratch of n_keys. The scalar and AVX2 forms differ only in dot/axpy.
void attend_head(const float* q, const float* k, const float* v, int64_t n_keys, int64_t kv_stride, int64_t head_dim,
                 float scale, float* scores, float* out, bool avx2);

}  // namespace lutq::model
