// The non-GEMM pieces of a Llama forward pass: RMSNorm, RoPE (llama.cpp "normal" mode 0),
// causal grouped-query attention over a KV cache, SwiGLU, residual add. Row-major fp32
// throughout; `use_avx2` picks the AVX2+FMA inner loops (dot products and axpy in attention)
// where the caller found the CPU has them.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "model/config.h"

namespace lutq::model {

// out[i] = x[i] / sqrt(mean(x²) + eps) · w[i] for one row of n (sum of squares in double, as
// ggml). out may alias x.
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out);

// cos/sin of the rotation angles of `count` consecutive positions from `start_pos`:
// cos[t*(dim/2) + i], sin[...] for pair i of position start_pos + t, with angle
//   θ = (pos / linear_factor) · base^(−2i/dim) / freq_factor[i]   (computed in double).
struct RopeTable {
  int64_t half_dim = 0;
  std::vector<float> cos;
  std::vector<float> sin;
};
RopeTable make_rope_table(const RopeConfig& rope, int64_t start_pos, int64_t count);

// Rotates the first 2·half_dim values of each of the `n_heads` heads (stride head_dim) of one
// token in place, adjacent pairs (x[2i], x[2i+1]) — ggml_rope mode 0, the convention of GGUF
// llama weights (whose converter permuted Q/K rows from Hugging Face's rotate_half layout).
void apply_rope(float* x, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin, int64_t half_dim);

// In-place softmax of x[n] (max subtracted, exp, normalised).
void softmax(float* x, int64_t n);

// gate[i] = silu(gate[i]) · up[i] = gate/(1+e^−gate) · up.
void swiglu(float* gate, const float* up, int64_t n);

// y[i] += x[i].
void add_inplace(float* y, const float* x, int64_t n);

// Causal attention of m query tokens at positions start_pos..start_pos+m−1 over the cache rows
// 0..start_pos+m−1 (the new tokens' keys/values already written). q, out: [m][n_head·head_dim];
// k_cache, v_cache: [positions][n_head_kv·head_dim]. Query head h reads kv head h / (n_head /
// n_head_kv). Scores are scaled by 1/sqrt(head_dim). Split over (token, head) pairs.
struct AttentionShape {
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
};
void attention(const float* q, const float* k_cache, const float* v_cache, int64_t m, int64_t start_pos,
               const AttentionShape& shape, float* out, ThreadPool& pool, bool use_avx2);

// Dot product and y += a·x; the AVX2 forms live in ops_avx2.cc (precondition: CPU has AVX2+FMA).
float dot_scalar(const float* a, const float* b, int64_t n);
void axpy_scalar(float a, const float* x, float* y, int64_t n);
float dot_avx2(const float* a, const float* b, int64_t n);
void axpy_avx2(float a, const float* x, float* y, int64_t n);

}  // namespace lutq::model
