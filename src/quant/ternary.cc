// Ternary RTN and GPTQ-ternary (see ternary.h).
#include "quant/ternary.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <cblas.h>

#include "core/fp16.h"
#include "core/thread_pool.h"

namespace lutq::quant {
namespace {

constexpr int64_t kTileRows = 16;  // rows swept together, so each U row is read once per tile

void run_rows(ThreadPool* pool, int64_t count, FunctionRef<void(int64_t, int64_t)> fn) {
  if (pool == nullptr || pool->size() == 1 || count <= 1) {
    fn(0, count);
  } else {
    pool->parallel_for(count, 1, fn);
  }
}

Status check_input(const float* w, int64_t n, int64_t k, const TernaryOptions& opt) {
  if (n < 1 || k < 1) return Status::invalid("ternary: bad shape " + std::to_string(n) + "x" + std::to_string(k));
  if (w == nullptr) return Status::invalid("ternary: weight pointer is null");
  if (!(opt.min_zero_fraction >= 0.0 && opt.min_zero_fraction <= 1.0)) {
    return Status::invalid("ternary: min_zero_fraction must be in [0, 1]");
  }
  for (int64_t i = 0; i < n * k; ++i) {
    if (!std::isfinite(w[i]) || std::fabs(w[i]) > 65504.0f) {
      return Status::invalid("ternary: weight at row " + std::to_string(i / k) + ", column " + std::to_string(i % k) +
                             " is not finite or beyond the fp16 range");
    }
  }
  return Status::ok();
}

int8_t symbol(double x, const TernaryGrid& g) {
  if (g.s == 0.0f || !(std::fabs(x) > g.t)) return 0;
  return x > 0.0 ? int8_t{1} : int8_t{-1};
}

format::TernaryMatrix empty_matrix(int64_t n, int64_t k) {
  return format::TernaryMatrix{n, k, std::vector<int8_t>(static_cast<size_t>(n * k), 0),
                               std::vector<uint16_t>(static_cast<size_t>(n), 0)};
}

// The GPTQ sweep of rows [r0, r0 + rows): wt in sweep order, eager updates inside a tile.
void sweep_tile(const float* w, int64_t k, const GptqFactor& f, const TernaryOptions& opt, int64_t r0, int64_t rows,
                format::TernaryMatrix& out) {
  const int64_t* perm = f.perm.data();
  const double* u = f.u.data();
  std::vector<double> wt(static_cast<size_t>(rows * k));
  std::vector<TernaryGrid> grids(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = w + (r0 + r) * k;
    grids[static_cast<size_t>(r)] = fit_ternary_row(src, k, opt);
    out.scale[static_cast<size_t>(r0 + r)] = fp32_to_fp16(grids[static_cast<size_t>(r)].s);
    for (int64_t p = 0; p < k; ++p) wt[static_cast<size_t>(r * k + p)] = src[perm[p]];
  }
  for (int64_t p = 0; p < k; ++p) {
    const double d = u[p * k + p];
    const double* up = u + p * k;
    for (int64_t r = 0; r < rows; ++r) {
      double* row = wt.data() + r * k;
      const TernaryGrid& g = grids[static_cast<size_t>(r)];
      const int8_t s = symbol(row[p], g);
      out.t[static_cast<size_t>((r0 + r) * k + perm[p])] = s;
      const double e = (row[p] - static_cast<double>(g.s) * s) / d;
      for (int64_t j = p + 1; j < k; ++j) row[j] -= e * up[j];
    }
  }
}

}  // namespace

TernaryGrid fit_ternary_row(const float* w, int64_t k, const TernaryOptions& opt) {
  std::vector<double> a(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) a[static_cast<size_t>(c)] = std::fabs(static_cast<double>(w[c]));
  std::sort(a.begin(), a.end(), std::greater<>());
  TernaryGrid g;
  if (a.empty() || a[0] == 0.0) return g;
  if (opt.scale == TernaryScale::kMaxAbs) {
    g.s = fp16_to_fp32(fp32_to_fp16(static_cast<float>(a[0])));
    g.t = 0.5 * g.s;
    return g;
  }
  // Support of size j: error = Σw² − S_j²/j with S_j the sum of the j largest |w|.
  const auto max_j = static_cast<int64_t>(std::floor((1.0 - opt.min_zero_fraction) * static_cast<double>(k) + 1e-9));
  double sum = 0.0;
  double best_gain = 0.0;
  int64_t best_j = 0;
  for (int64_t j = 1; j <= max_j; ++j) {
    sum += a[static_cast<size_t>(j - 1)];
    const double gain = sum * sum / static_cast<double>(j);
    if (gain > best_gain) {
      best_gain = gain;
      best_j = j;
    }
  }
  if (best_j == 0) return g;
  double s_sum = 0.0;
  for (int64_t j = 0; j < best_j; ++j) s_sum += a[static_cast<size_t>(j)];
  g.s = fp16_to_fp32(fp32_to_fp16(static_cast<float>(s_sum / static_cast<double>(best_j))));
  const double next = best_j < k ? a[static_cast<size_t>(best_j)] : 0.0;
  g.t = std::max(0.5 * g.s, 0.5 * (a[static_cast<size_t>(best_j - 1)] + next));
  return g;
}

Result<format::TernaryMatrix> ternary_rtn(const float* w, int64_t n, int64_t k, const TernaryOptions& opt,
                                          ThreadPool* pool) {
  if (Status s = check_input(w, n, k, opt); !s) return s;
  format::TernaryMatrix out = empty_matrix(n, k);
  run_rows(pool, n, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const TernaryGrid g = fit_ternary_row(w + r * k, k, opt);
      out.scale[static_cast<size_t>(r)] = fp32_to_fp16(g.s);
      for (int64_t c = 0; c < k; ++c) out.t[static_cast<size_t>(r * k + c)] = symbol(w[r * k + c], g);
    }
  });
  return out;
}

Result<format::TernaryMatrix> ternary_gptq(const float* w, int64_t n, int64_t k, const GptqFactor& factor,
                                           const TernaryOptions& opt, ThreadPool* pool) {
  if (Status s = check_input(w, n, k, opt); !s) return s;
  if (factor.k != k || static_cast<int64_t>(factor.u.size()) != k * k || static_cast<int64_t>(factor.perm.size()) != k) {
    return Status::invalid("ternary gptq: the Hessian factor is for k=" + std::to_string(factor.k) +
                           ", the weights have k=" + std::to_string(k));
  }
  format::TernaryMatrix out = empty_matrix(n, k);
  const int64_t tiles = (n + kTileRows - 1) / kTileRows;
  run_rows(pool, tiles, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r0 = t * kTileRows;
      sweep_tile(w, k, factor, opt, r0, std::min(kTileRows, n - r0), out);
    }
  });
  return out;
}

double ternary_calibrated_error(const float* w, const format::TernaryMatrix& q, const double* h) {
  // Tiles of rows: Δ (tile×k) times H through DSYMM, then Σ Δ ∘ (Δ H).
  constexpr int64_t kTile = 64;
  const int64_t k = q.k;
  std::vector<double> delta(static_cast<size_t>(kTile * k));
  std::vector<double> dh(static_cast<size_t>(kTile * k));
  double total = 0.0;
  for (int64_t r0 = 0; r0 < q.n; r0 += kTile) {
    const int64_t rows = std::min(kTile, q.n - r0);
    for (int64_t t = 0; t < rows; ++t) {
      const double s = fp16_to_fp32(q.scale[static_cast<size_t>(r0 + t)]);
      for (int64_t c = 0; c < k; ++c) {
        const int64_t i = (r0 + t) * k + c;
        delta[static_cast<size_t>(t * k + c)] = w[i] - s * q.t[static_cast<size_t>(i)];
      }
    }
    cblas_dsymm(CblasRowMajor, CblasRight, CblasLower, static_cast<blasint>(rows), static_cast<blasint>(k), 1.0, h,
                static_cast<blasint>(k), delta.data(), static_cast<blasint>(k), 0.0, dh.data(), static_cast<blasint>(k));
    for (int64_t i = 0; i < rows * k; ++i) total += delta[static_cast<size_t>(i)] * dh[static_cast<size_t>(i)];
  }
  return total;
}

}  // namespace lutq::quant
