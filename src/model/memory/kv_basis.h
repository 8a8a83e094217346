// The low-rank basis XQuant caches a grouped-query layer's input in (XQuant §GQA): with
// W = [W_k; W_v] (2·kv_dim × n_embd, biases aside), K and V depend on x only through its
// projection onto the row space of W, of dimension rank(W) <= 2·kv_dim < n_embd. With U
// (n_embd × r) columns spanning that row space, x·Wᵀ = (x·U)·(Uᵀ·Wᵀ) exactly, so caching the
// r = 2·kv_dim values x·U instead of the n_embd of x keeps everything K and V need and is never
// larger than K + V.
//
// The rows of W can be taken in blocks, each with its own orthonormal basis (the right singular
// vectors of the block, strongest first), the latent being the blocks' coordinates side by side:
//   kJoint     one block, all of W: one basis of rank 2·kv_dim; every key and value reads all r
//              latent values (key rebuild n × r × kv_dim);
//   kSplit     W_k and W_v apart (kv_dim each): keys read the first kv_dim latent values
//              (rebuild n × kv_dim²), values the rest;
//   kPerHead   one block per kv head of W_k and of W_v (head_dim rows each): key head g reads
//              only its head_dim latent values (rebuild n × kv_dim × head_dim);
//   kHeadKeys  W_k per kv head, W_v as one block.
// Each block's coordinates are an invertible linear image of its rows' outputs, so all hold
// exactly what K and V need; they differ in what the per-channel quantization sees and in the
// rebuild cost (docs/memory.md).
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "model/memory.h"

namespace lutq::model {

using KvBlocks = XQuantBasis;

struct KvBasis {
  int64_t rank = 0;         // r: latent values per position (zero columns where W has a smaller rank)
  std::vector<float> ut;    // [r][n_embd]: Uᵀ, so x·U is a GEMM with Uᵀ as the weight rows
  // Key head g reads latent columns [key_offset(g), + key_width), value head g
  // [value_offset(g), + value_width).
  int64_t key_width = 0, value_width = 0;
  int64_t key_base = 0, key_stride = 0, value_base = 0, value_stride = 0;
  std::vector<float> key_map;    // [n_head_kv][head_dim][key_width]: W_k,g·U over head g's key columns
  std::vector<float> value_map;  // [n_head_kv][head_dim][value_width]
  int64_t key_offset(int64_t g) const { return key_base + g * key_stride; }
  int64_t value_offset(int64_t g) const { return value_base + g * value_stride; }
};

// Latent columns a key head and a value head read under this layout.
int64_t kv_key_width(KvBlocks blocks, int64_t n_head_kv, int64_t head_dim);
int64_t kv_value_width(KvBlocks blocks, int64_t n_head_kv, int64_t head_dim);
// Floats a basis of this layout holds (Uᵀ and both maps).
int64_t kv_basis_floats(KvBlocks blocks, int64_t n_embd, int64_t n_head_kv, int64_t head_dim);

// The weights the layer applies, read by running its k/v path on the identity (any weight form:
// dense, BCQ, int8) and taking the biases off: w [2·kv_dim][n_embd], k rows then v rows.
Result<std::vector<double>> probe_kv_weights(const KvProjector& kv, int64_t n_embd, int64_t kv_dim, ThreadPool& pool);

// The basis (2·kv_dim < n_embd), per block from the eigenvectors of W_b·W_bᵀ (LAPACK dsyevd in
// double): W_b = P Σ U_bᵀ gives U_b = W_bᵀ P Σ⁻¹. Singular values below 1e-7 of the block's
// largest count as zero (their U columns are left zero).
Result<KvBasis> kv_basis(const KvProjector& kv, int64_t n_embd, int64_t n_head_kv, int64_t head_dim, KvBlocks blocks,
                         ThreadPool& pool);

}  // namespace lutq::model
