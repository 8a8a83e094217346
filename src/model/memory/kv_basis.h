// The low-rank basis XQuant caches a grouped-query layer's input in (XQuant §GQA): with
// W = [W_k; W_v] (2·kv_dim × n_embd, biases aside), K and V depend on x only through its
// projection onto the row space of W, of dimension rank(W) <= 2·kv_dim < n_embd. With U
// (n_embd × r) orthonormal columns spanning that row space (the right singular vectors of W,
// strongest first), x·Wᵀ = (x·U)·(Uᵀ·Wᵀ) exactly, so caching the r values x·U instead of the
// n_embd of x keeps everything K and V need and is never larger than K + V.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "model/memory.h"

namespace lutq::model {

struct KvBasis {
  int64_t rank = 0;         // r: columns of U (zero columns where W has a smaller rank)
  std::vector<float> ut;    // [r][n_embd]: Uᵀ, so x·U is a GEMM with Uᵀ as the weight rows
  std::vector<float> w_u;   // [2·kv_dim][r]: W·U, so [k|v] − bias = (x·U)·(W·U)ᵀ
};

// The weights the layer applies, read by running its k/v path on the identity (any weight form:
// dense, BCQ, int8) and taking the biases off: w [2·kv_dim][n_embd], k rows then v rows.
Result<std::vector<double>> probe_kv_weights(const KvProjector& kv, int64_t n_embd, int64_t kv_dim, ThreadPool& pool);

// The basis of rank r = 2·kv_dim (< n_embd) from the eigenvectors of W·Wᵀ (2kv × 2kv, LAPACK
// dsyevd in double): W = P Σ Uᵀ gives U = Wᵀ P Σ⁻¹. Singular values below 1e-7 of the largest
// count as zero (their U columns are left zero).
Result<KvBasis> kv_basis(const KvProjector& kv, int64_t n_embd, int64_t kv_dim, ThreadPool& pool);

}  // namespace lutq::model
