#include "model/memory/kv_basis.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

#include <cblas.h>

// LAPACK from the BLAS the project links (OpenBLAS carries LAPACK; no LAPACKE header is
// installed). The Fortran ABI: every argument by pointer, then one hidden length per character
// argument.
extern "C" void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                        double* work, const int* lwork, int* iwork, const int* liwork, int* info, size_t jobz_len,
                        size_t uplo_len);

namespace lutq::model {
namespace {

// Eigen-decomposition of the symmetric a [n][n] (row-major = column-major here): eigenvalues
// ascending in w, eigenvector j in row j of a on return.
Status symmetric_eigen(std::vector<double>& a, int n, std::vector<double>& w) {
  w.assign(static_cast<size_t>(n), 0.0);
  const char jobz = 'V';
  const char uplo = 'L';
  int info = 0;
  int lwork = -1;
  int liwork = -1;
  double work_size = 0.0;
  int iwork_size = 0;
  dsyevd_(&jobz, &uplo, &n, a.data(), &n, w.data(), &work_size, &lwork, &iwork_size, &liwork, &info, 1, 1);
  if (info != 0) return Status::unsupported("dsyevd workspace query failed: info " + std::to_string(info));
  lwork = static_cast<int>(work_size);
  liwork = iwork_size;
  std::vector<double> work(static_cast<size_t>(lwork));
  std::vector<int> iwork(static_cast<size_t>(liwork));
  dsyevd_(&jobz, &uplo, &n, a.data(), &n, w.data(), work.data(), &lwork, iwork.data(), &liwork, &info, 1, 1);
  if (info != 0) return Status::unsupported("dsyevd failed: info " + std::to_string(info));
  return Status::ok();
}

}  // namespace

Result<std::vector<double>> probe_kv_weights(const KvProjector& kv, int64_t e, int64_t kvd, ThreadPool& pool) {
  std::vector<float> eye(static_cast<size_t>(e * e), 0.0f);
  for (int64_t i = 0; i < e; ++i) eye[static_cast<size_t>(i * e + i)] = 1.0f;
  std::vector<float> k(static_cast<size_t>(e * kvd)), v(k.size());
  if (Status st = kv.project(eye.data(), e, k.data(), v.data(), pool); !st) return st;
  const std::span<const float> bk = kv.k_bias();
  const std::span<const float> bv = kv.v_bias();
  std::vector<double> w(static_cast<size_t>(2 * kvd * e));
  for (int64_t c = 0; c < e; ++c) {
    for (int64_t o = 0; o < kvd; ++o) {
      const auto at = static_cast<size_t>(c * kvd + o);
      w[static_cast<size_t>(o * e + c)] = static_cast<double>(k[at]) - (bk.empty() ? 0.0 : bk[static_cast<size_t>(o)]);
      w[static_cast<size_t>((kvd + o) * e + c)] =
          static_cast<double>(v[at]) - (bv.empty() ? 0.0 : bv[static_cast<size_t>(o)]);
    }
  }
  return w;
}

namespace {

// Rows [row0, row0 + nb) of w [..][e] as one block: its orthonormal basis, strongest first, into
// rows [row0, row0 + nb) of ut [r][e].
Status block_basis(const std::vector<double>& w, int64_t e, int64_t row0, int64_t nb, std::vector<float>& ut) {
  const auto bn = static_cast<blasint>(nb);
  const auto be = static_cast<blasint>(e);
  const double* wb = w.data() + row0 * e;
  std::vector<double> gram(static_cast<size_t>(nb * nb));  // W_b·W_bᵀ, column-major lower triangle (what dsyevd reads)
  cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, bn, be, 1.0, wb, be, 0.0, gram.data(), bn);
  std::vector<double> lambda;
  if (Status st = symmetric_eigen(gram, static_cast<int>(nb), lambda); !st) return st;
  const double top = lambda.empty() ? 0.0 : std::max(lambda.back(), 0.0);
  // Row src of `gram` is eigenvector src (column-major output); PᵀW [nb][e] holds p_srcᵀ·W_b.
  std::vector<double> ptw(static_cast<size_t>(nb * e));
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bn, be, bn, 1.0, gram.data(), bn, wb, be, 0.0, ptw.data(), be);
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t src = nb - 1 - j;  // strongest first
    const double l = lambda[static_cast<size_t>(src)];
    if (!(l > top * 1e-14) || l <= 0.0) continue;  // σ below 1e-7 σ_max: outside the row space
    const double inv_sigma = 1.0 / std::sqrt(l);
    for (int64_t c = 0; c < e; ++c) {
      ut[static_cast<size_t>((row0 + j) * e + c)] = static_cast<float>(ptw[static_cast<size_t>(src * e + c)] * inv_sigma);
    }
  }
  return Status::ok();
}

// map [hd][width] = W rows [row0, row0 + hd) · U over latent columns [col0, col0 + width).
void block_map(const std::vector<double>& w, const std::vector<float>& ut, int64_t e, int64_t row0, int64_t hd,
               int64_t col0, int64_t width, float* map) {
  for (int64_t o = 0; o < hd; ++o) {
    const double* wo = w.data() + (row0 + o) * e;
    for (int64_t j = 0; j < width; ++j) {
      const float* u = ut.data() + (col0 + j) * e;
      double s = 0.0;
      for (int64_t c = 0; c < e; ++c) s += wo[c] * u[c];
      map[o * width + j] = static_cast<float>(s);
    }
  }
}

}  // namespace

int64_t kv_key_width(KvBlocks blocks, int64_t n_head_kv, int64_t hd) {
  switch (blocks) {
    case KvBlocks::kJoint: return 2 * n_head_kv * hd;
    case KvBlocks::kSplit: return n_head_kv * hd;
    default: return hd;
  }
}

int64_t kv_value_width(KvBlocks blocks, int64_t n_head_kv, int64_t hd) {
  switch (blocks) {
    case KvBlocks::kJoint: return 2 * n_head_kv * hd;
    case KvBlocks::kPerHead: return hd;
    default: return n_head_kv * hd;
  }
}

int64_t kv_basis_floats(KvBlocks blocks, int64_t e, int64_t n_head_kv, int64_t hd) {
  const int64_t kvd = n_head_kv * hd;
  return 2 * kvd * e + kvd * (kv_key_width(blocks, n_head_kv, hd) + kv_value_width(blocks, n_head_kv, hd));
}

Result<KvBasis> kv_basis(const KvProjector& kv, int64_t e, int64_t n_head_kv, int64_t hd, KvBlocks blocks,
                         ThreadPool& pool) {
  const int64_t kvd = n_head_kv * hd;
  Result<std::vector<double>> probed = probe_kv_weights(kv, e, kvd, pool);
  if (!probed) return probed.status();
  const std::vector<double>& w = *probed;
  KvBasis b;
  b.rank = 2 * kvd;
  b.ut.assign(static_cast<size_t>(b.rank * e), 0.0f);
  b.key_width = kv_key_width(blocks, n_head_kv, hd);
  b.value_width = kv_value_width(blocks, n_head_kv, hd);
  const bool joint = b.key_width == b.rank;
  // Blocks of rows: all of W (joint), else the keys' in steps of key_width, the values' of value_width.
  for (int64_t row0 = 0; row0 < b.rank;) {
    const int64_t rows = joint ? b.rank : (row0 < kvd ? b.key_width : b.value_width);
    if (Status st = block_basis(w, e, row0, rows, b.ut); !st) return st;
    row0 += rows;
  }
  b.key_stride = b.key_width == hd ? hd : 0;
  b.value_base = joint ? 0 : kvd;
  b.value_stride = b.value_width == hd ? hd : 0;
  b.key_map.resize(static_cast<size_t>(kvd * b.key_width));
  b.value_map.resize(static_cast<size_t>(kvd * b.value_width));
  for (int64_t g = 0; g < n_head_kv; ++g) {
    block_map(w, b.ut, e, g * hd, hd, b.key_offset(g), b.key_width, b.key_map.data() + g * hd * b.key_width);
    block_map(w, b.ut, e, kvd + g * hd, hd, b.value_offset(g), b.value_width,
              b.value_map.data() + g * hd * b.value_width);
  }
  return b;
}

}  // namespace lutq::model
