// Attention over keys given in fp32 and values given as latents (XQuant): the values of kv head
// g are v_j = ĉ_j[cols_g]·A_gᵀ + b_v (a map A_g [head_dim][width] over `width` latent columns, or
// the layer's own v linear on ĉ_j when the latent is x itself). The softmax weights p of a query
// head sum to one, so its output Σ_j p_j v_j = (Σ_j p_j ĉ_j[cols_g])·A_gᵀ + b_v: a weighted sum of
// latents and one map per head, never the n values themselves.
#pragma once

#include <cstdint>
#include <span>

#include "model/memory.h"

namespace lutq::model {

struct LatentValues {
  const float* c = nullptr;  // ĉ [n][r], positions 0..n−1 of the sequence
  int64_t r = 0;
  int64_t width = 0;                 // latent columns a value head reads
  int64_t base = 0, stride = 0;      // kv head g reads columns [base + g·stride, + width)
  // [n_head_kv][head_dim][width]; null: kv->project_values, or with kv null too, the columns
  // are the values themselves (width = head_dim, bias included)
  const float* map = nullptr;
  std::span<const float> bias;       // b_v [kv_dim] or empty (with a map; the linear adds its own)
  const KvProjector* kv = nullptr;
};

// For the rows `rows` (indices into in.rows, all of one sequence) writes out [m][n_head·head_dim]
// as Memory::attend does: row t's query heads attend over positions 0..pos_t, keys k [n][kv_dim]
// (RoPE applied), values from `v`.
Status attend_latent(const MemoryShape& s, const AttentionRows& in, std::span<const int64_t> rows, const float* k,
                     const LatentValues& v, float* out, OpIsa ops, ThreadPool& pool);

}  // namespace lutq::model
