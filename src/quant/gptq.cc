// GPTQ: inverse-Hessian factorisation, the tiled column sweep with lazy block updates and
// per-group grid fits, the calibrated error and the AdaDim orientation choice (see gptq.h).
#include "quant/gptq.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <optional>
#include <string>

#include <cblas.h>

#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/scale_codes.h"
#include "quant/group_fit.h"
#include "quant/scale_fit.h"

// LAPACK (OpenBLAS), Fortran interface: Cholesky and triangular inverse.
using lapack_int = int;
extern "C" {
void dpotrf_(const char* uplo, const lapack_int* n, double* a, const lapack_int* lda, lapack_int* info);
void dtrtri_(const char* uplo, const char* diag, const lapack_int* n, double* a, const lapack_int* lda, lapack_int* info);
}

namespace lutq::quant {
namespace {

using format::BcqMatrix;
using format::Orientation;

constexpr double kFp16Max = 65504.0;
constexpr double kPivotTol = 1e-12;  // relative to the diagonal entry being factored
constexpr int64_t kTileRowsPerOc = 16;  // rows per sweep tile (per-OC): the tile's W stays in L2

// y[j] −= a·x[j], j < len: the update every GPTQ step and the Cholesky are made of.
[[gnu::target_clones("avx2", "default")]] void axpy_sub(double* y, const double* x, double a, int64_t len) {
  for (int64_t j = 0; j < len; ++j) y[j] -= a * x[j];
}

void run_parallel(ThreadPool* pool, int64_t count, FunctionRef<void(int64_t, int64_t)> fn) {
  if (pool == nullptr || pool->size() == 1 || count <= 1) {
    fn(0, count);
  } else {
    pool->parallel_for(count, 1, fn);
  }
}

// u := U, upper, with UᵀU = a⁻¹ for the symmetric a[k][k] (lower triangle read), through
// LAPACK (OpenBLAS: blocked and threaded). With J the index reversal, J a J = L Lᵀ (dpotrf) gives
// a = Ũ Ũᵀ for the upper Ũ = J L J, so a⁻¹ = (Ũ⁻¹)ᵀ Ũ⁻¹ and U = Ũ⁻¹ = J L⁻¹ J (dtrtri): the
// upper factor of the inverse without forming the inverse. False on a pivot that is not a
// positive share (kPivotTol) of its diagonal entry, or on a non-finite result.
bool inverse_upper_factor(const std::vector<double>& a, int64_t k, std::vector<double>& u) {
  // Column-major b = J a J: b(i, j) at b[i + j·k] = a[k−1−i][k−1−j] = a[k−1−j][k−1−i] (a's
  // lower triangle), filled for i >= j: the lower triangle dpotrf reads.
  std::vector<double> b(static_cast<size_t>(k * k), 0.0);
  for (int64_t j = 0; j < k; ++j) {
    for (int64_t i = j; i < k; ++i) b[static_cast<size_t>(i + j * k)] = a[static_cast<size_t>((k - 1 - j) * k + (k - 1 - i))];
  }
  const lapack_int n = static_cast<lapack_int>(k);
  lapack_int info = 0;
  char lower = 'L';
  char non_unit = 'N';
  dpotrf_(&lower, &n, b.data(), &n, &info);
  if (info != 0) return false;
  for (int64_t i = 0; i < k; ++i) {
    const double l = b[static_cast<size_t>(i + i * k)];
    const double d0 = a[static_cast<size_t>((k - 1 - i) * k + (k - 1 - i))];
    if (!std::isfinite(l) || !(l * l > kPivotTol * d0)) return false;
  }
  dtrtri_(&lower, &non_unit, &n, b.data(), &n, &info);
  if (info != 0) return false;
  u.assign(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = i; j < k; ++j) {
      const double v = b[static_cast<size_t>((k - 1 - i) + (k - 1 - j) * k)];
      if (!std::isfinite(v)) return false;
      u[static_cast<size_t>(i * k + j)] = v;
    }
  }
  return true;
}

Status check_weights(const float* w, int64_t n, int64_t k) {
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const float x = w[r * k + c];
      if (std::isfinite(x) && std::fabs(x) <= kFp16Max) continue;
      char buf[160];
      std::snprintf(buf, sizeof buf, "gptq: weight at row %lld, column %lld is %s (value %g)",
                    static_cast<long long>(r), static_cast<long long>(c),
                    std::isfinite(x) ? "beyond the fp16 range" : "not finite", static_cast<double>(x));
      return Status::invalid(buf);
    }
  }
  return Status::ok();
}

Status check_options(const GptqOptions& opt) {
  if (!(opt.percdamp >= 0.0) || !std::isfinite(opt.percdamp)) {
    return Status::invalid("gptq: percdamp must be finite and >= 0 (got " + std::to_string(opt.percdamp) + ")");
  }
  if (opt.block_size < 1) return Status::invalid("gptq: block_size must be >= 1 (got " + std::to_string(opt.block_size) + ")");
  if (opt.iterations < 0) return Status::invalid("gptq: iterations must be >= 0");
  if (opt.max_damp_retries < 0) return Status::invalid("gptq: max_damp_retries must be >= 0");
  return Status::ok();
}

// The sorted grids of the scale sets a tile owns: values, midpoints and codes, 2^q each.
struct TileGrids {
  int size = 0;
  std::vector<double> values, mids;
  std::vector<uint8_t> codes;
  void reset(int64_t sets, int q) {
    size = 1 << q;
    values.assign(static_cast<size_t>(sets * size), 0.0);
    mids.assign(static_cast<size_t>(sets * size), 0.0);
    codes.assign(static_cast<size_t>(sets * size), 0);
  }
};

// One thread's scratch for fitting groups.
struct Fitter {
  detail::GroupFitter fitter;
  detail::CodeSearch search;
  detail::ValueGrid grid;
  std::vector<float> values;
  std::vector<double> weights;
  std::vector<uint8_t> codes;
};

// Fits v[len] (weights d[len], nullable) with the method, stores α/offset (fp16) as scale set
// `global` of m and the resulting grid as tile set `local`.
void fit_set(const float* v, int64_t len, const GptqOptions& opt, BcqMatrix& m, int64_t global, int64_t local,
             Fitter& f, TileGrids& grids, const double* d = nullptr) {
  const int q = m.cfg.q;
  float alpha[format::kMaxBits] = {};
  float offset = 0.0f;
  f.codes.resize(static_cast<size_t>(len));
  f.fitter.fit(v, len, q, opt.method, m.cfg.has_offset, opt.iterations, alpha, &offset, f.codes.data(), d);
  if (m.codes.bits > 0) detail::code_fitted_set(m, global, v, d, len, f.search, f.codes.data(), alpha, &offset);
  double alpha_d[format::kMaxBits] = {};
  for (int i = 0; i < q; ++i) {
    m.alpha[static_cast<size_t>(global * q + i)] = fp32_to_fp16(alpha[i]);
    alpha_d[i] = alpha[i];  // already fp16-representable
  }
  if (m.cfg.has_offset) m.offset[static_cast<size_t>(global)] = fp32_to_fp16(offset);
  f.grid.build(alpha_d, q, m.cfg.has_offset ? static_cast<double>(offset) : 0.0);
  const auto base = static_cast<size_t>(local * grids.size);
  std::copy(f.grid.values(), f.grid.values() + grids.size, grids.values.begin() + static_cast<std::ptrdiff_t>(base));
  std::copy(f.grid.codes(), f.grid.codes() + grids.size, grids.codes.begin() + static_cast<std::ptrdiff_t>(base));
  std::copy(f.grid.mids(), f.grid.mids() + grids.size - 1, grids.mids.begin() + static_cast<std::ptrdiff_t>(base));
}

// Writes the codes of row r (codes[k], bit i = plane i) into the bit-planes of m.
void write_row(BcqMatrix& m, int64_t r, const uint8_t* codes) {
  const int64_t row_bytes = m.row_bytes();
  for (int i = 0; i < m.cfg.q; ++i) {
    uint8_t* dst = m.bits.data() + (i * m.n + r) * row_bytes;
    for (int64_t b = 0; b < row_bytes; ++b) {
      const int64_t end = std::min<int64_t>(8, m.k - b * 8);
      unsigned byte = 0;
      for (int64_t j = 0; j < end; ++j) byte |= ((codes[b * 8 + j] >> i) & 1u) << j;
      dst[b] = static_cast<uint8_t>(byte);
    }
  }
}

struct SweepPlan {
  bool per_oc = true;
  bool static_groups = false;
  int64_t block = 128;
  int64_t tile_rows = kTileRowsPerOc;
};

// The GPTQ sweep over rows [r0, r0 + rows) (per-IC: exactly one row group).
void sweep_tile(const float* w, BcqMatrix& m, const GptqFactor& f, const GptqOptions& opt, const SweepPlan& plan,
                int64_t r0, int64_t rows) {
  const int64_t k = m.k;
  const int64_t g = m.cfg.g;
  const int64_t gk = k / g;  // per-OC groups per row
  const int64_t* perm = f.perm.data();
  const double* u = f.u.data();
  std::vector<double> wt(static_cast<size_t>(rows * k));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t p = 0; p < k; ++p) wt[static_cast<size_t>(r * k + p)] = w[(r0 + r) * k + perm[p]];
  }
  std::vector<uint8_t> codes(static_cast<size_t>(rows * k));
  std::vector<double> err(static_cast<size_t>(rows * plan.block));
  TileGrids grids;
  grids.reset(plan.per_oc ? rows * gk : k, m.cfg.q);
  Fitter fit;
  fit.values.resize(static_cast<size_t>(std::max(g, rows)));
  const bool weighted = opt.importance && plan.per_oc;
  if (plan.static_groups) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t gi = 0; gi < gk; ++gi) {
        fit_set(w + (r0 + r) * k + gi * g, g, opt, m, (r0 + r) * gk + gi, r * gk + gi, fit, grids,
                weighted ? f.diag.data() + gi * g : nullptr);
      }
    }
  }
  const int size = grids.size;
  for (int64_t i1 = 0; i1 < k; i1 += plan.block) {
    const int64_t i2 = std::min(k, i1 + plan.block);
    for (int64_t p = i1; p < i2; ++p) {
      const int64_t c = perm[p];
      if (plan.per_oc && !plan.static_groups && p % g == 0) {
        // Entering a group: fit on the error-updated weights (identity order, or g = k).
        if (weighted) {
          fit.weights.resize(static_cast<size_t>(g));
          for (int64_t e = 0; e < g; ++e) fit.weights[static_cast<size_t>(e)] = f.diag[static_cast<size_t>(perm[p + e])];
        }
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t e = 0; e < g; ++e) fit.values[static_cast<size_t>(e)] = static_cast<float>(wt[static_cast<size_t>(r * k + p + e)]);
          fit_set(fit.values.data(), g, opt, m, (r0 + r) * gk + p / g, r * gk + p / g, fit, grids,
                  weighted ? fit.weights.data() : nullptr);
        }
      } else if (!plan.per_oc) {
        for (int64_t r = 0; r < rows; ++r) fit.values[static_cast<size_t>(r)] = static_cast<float>(wt[static_cast<size_t>(r * k + p)]);
        fit_set(fit.values.data(), rows, opt, m, (r0 / g) * k + c, c, fit, grids);
      }
      const double d = u[p * k + p];
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t set = plan.per_oc ? r * gk + c / g : c;
        const auto base = static_cast<size_t>(set * size);
        double* row = wt.data() + r * k;
        const double x = row[p];
        const int idx = detail::nearest_index(grids.mids.data() + base, size, x);
        codes[static_cast<size_t>(r * k + c)] = grids.codes[base + static_cast<size_t>(idx)];
        const double e = (x - grids.values[base + static_cast<size_t>(idx)]) / d;
        err[static_cast<size_t>(r * plan.block + (p - i1))] = e;
        axpy_sub(row + p + 1, u + p * k + p + 1, e, i2 - p - 1);
      }
    }
    if (i2 < k) {  // the lazy update of the rest of each row with the block's errors
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t t = 0; t < i2 - i1; ++t) {
          axpy_sub(wt.data() + r * k + i2, u + (i1 + t) * k + i2, err[static_cast<size_t>(r * plan.block + t)], k - i2);
        }
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) write_row(m, r0 + r, codes.data() + r * k);
}

// Σ_j h[i][j]·d[j] summed in 4 lanes (vectorisable without reassociation).
[[gnu::target_clones("avx2", "default")]] double dot(const double* a, const double* b, int64_t len) {
  double acc[4] = {};
  int64_t j = 0;
  for (; j + 4 <= len; j += 4) {
    for (int l = 0; l < 4; ++l) acc[l] += a[j + l] * b[j + l];
  }
  double s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; j < len; ++j) s += a[j] * b[j];
  return s;
}

// The lines' super scales, offset ranges and starting codes for opt.scale_bits (gptq.h). Where
// every group is fitted on the original weights (on_original: static groups, per-OC with g = k),
// from the plain fit of them. Elsewhere the sweep fits groups on weights its error feedback has
// moved, so from a pilot sweep with fp16 scales on the same factor: the coded sweep quantizes
// nearly the same weights. The pilot costs a second sweep.
Result<format::ScaleCodes> sweep_lines(const float* w, int64_t n, int64_t k, const GptqFactor& factor,
                                       const GptqOptions& opt, const format::BcqConfig& cfg, bool on_original,
                                       ThreadPool* pool) {
  if (Status b = format::validate_scale_bits(opt.scale_bits); !b) return Status::invalid("gptq: " + b.message());
  if (on_original) {
    std::span<const double> importance;
    if (opt.importance && cfg.orientation == Orientation::kPerOC) importance = factor.diag;
    return line_scales(w, n, k, QuantOptions{opt.method, cfg, opt.iterations, false, 0}, importance, opt.scale_bits,
                       pool);
  }
  GptqOptions pilot_opt = opt;
  pilot_opt.scale_bits = 0;
  Result<BcqMatrix> pilot = gptq_quantize(w, n, k, factor, pilot_opt, pool);
  if (!pilot) return pilot.status();
  return fit_line_scales(*pilot, opt.scale_bits);
}

}  // namespace

Result<GptqFactor> prepare_gptq(const double* h, int64_t k, const GptqOptions& opt, ThreadPool* /*pool*/) {
  if (Status s = check_options(opt); !s) return s;
  if (k < 1) return Status::invalid("gptq: k must be at least 1 (got " + std::to_string(k) + ")");
  if (h == nullptr) return Status::invalid("gptq: null Hessian");
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      if (!std::isfinite(h[i * k + j])) {
        return Status::invalid("gptq: Hessian entry (" + std::to_string(i) + ", " + std::to_string(j) + ") is not finite");
      }
    }
    if (h[i * k + i] < 0.0) {
      return Status::invalid("gptq: Hessian diagonal entry " + std::to_string(i) + " is negative (not a second moment)");
    }
  }
  GptqFactor f;
  f.k = k;
  f.act_order = opt.act_order;
  std::vector<double> diag(static_cast<size_t>(k));
  f.diag.resize(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    const double d = h[i * k + i];
    f.diag[static_cast<size_t>(i)] = d;
    f.dead_columns += d == 0.0 ? 1 : 0;
    diag[static_cast<size_t>(i)] = d == 0.0 ? 1.0 : d;
  }
  const double mean_diag = std::accumulate(diag.begin(), diag.end(), 0.0) / static_cast<double>(k);
  f.perm.resize(static_cast<size_t>(k));
  std::iota(f.perm.begin(), f.perm.end(), int64_t{0});
  if (opt.act_order) {
    std::stable_sort(f.perm.begin(), f.perm.end(),
                     [&](int64_t a, int64_t b) { return diag[static_cast<size_t>(a)] > diag[static_cast<size_t>(b)]; });
  }
  double damp = opt.percdamp * mean_diag;
  std::vector<double> a(static_cast<size_t>(k * k));
  for (int attempt = 0; attempt <= opt.max_damp_retries; ++attempt) {
    for (int64_t p = 0; p < k; ++p) {
      const int64_t ip = f.perm[static_cast<size_t>(p)];
      for (int64_t q = 0; q <= p; ++q) {
        const int64_t iq = f.perm[static_cast<size_t>(q)];
        a[static_cast<size_t>(p * k + q)] = ip >= iq ? h[ip * k + iq] : h[iq * k + ip];
      }
      a[static_cast<size_t>(p * k + p)] = diag[static_cast<size_t>(ip)] + damp;
    }
    if (inverse_upper_factor(a, k, f.u)) {
      f.damp = damp;
      f.damp_retries = attempt;
      return f;
    }
    damp = damp > 0.0 ? damp * 10.0 : 1e-6 * mean_diag;
  }
  return Status::invalid("gptq: the damped Hessian is not positive definite after " +
                         std::to_string(opt.max_damp_retries) + " damping increases (last damp " +
                         std::to_string(damp / 10.0) + ")");
}

Result<format::BcqMatrix> gptq_quantize(const float* w, int64_t n, int64_t k, const GptqFactor& factor,
                                        const GptqOptions& opt, ThreadPool* pool) {
  if (Status s = check_options(opt); !s) return s;
  format::BcqConfig cfg = opt.cfg;
  if (opt.method == Method::kRtn) cfg.has_offset = true;
  if (Status s = format::validate_config(cfg, n, k); !s) return s;
  if (w == nullptr) return Status::invalid("gptq: weight pointer is null");
  if (factor.k != k || static_cast<int64_t>(factor.u.size()) != k * k ||
      static_cast<int64_t>(factor.perm.size()) != k) {
    return Status::invalid("gptq: the Hessian factor is for k=" + std::to_string(factor.k) + ", the weights have k=" +
                           std::to_string(k));
  }
  if (factor.act_order != opt.act_order) return Status::invalid("gptq: the factor was prepared with another act_order");
  if (opt.importance && static_cast<int64_t>(factor.diag.size()) != k) {
    return Status::invalid("gptq: importance weighting needs the factor's diag(H)");
  }
  if (Status s = check_weights(w, n, k); !s) return s;
  Result<BcqMatrix> made = format::make_empty(n, k, cfg);
  if (!made) return made.status();
  BcqMatrix m = std::move(made).value();
  SweepPlan plan;
  plan.per_oc = cfg.orientation == Orientation::kPerOC;
  plan.static_groups = plan.per_oc && opt.act_order && cfg.g < k;
  if (opt.scale_bits != 0) {
    Result<format::ScaleCodes> lines =
        sweep_lines(w, n, k, factor, opt, cfg, plan.static_groups || (plan.per_oc && cfg.g == k), pool);
    if (!lines) return lines.status();
    m.codes = std::move(lines).value();
  }
  plan.block = opt.block_size;
  if (plan.per_oc && !plan.static_groups && cfg.g < k) plan.block = (opt.block_size + cfg.g - 1) / cfg.g * cfg.g;
  plan.tile_rows = plan.per_oc ? kTileRowsPerOc : cfg.g;
  const int64_t tiles = (n + plan.tile_rows - 1) / plan.tile_rows;
  run_parallel(pool, tiles, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r0 = t * plan.tile_rows;
      sweep_tile(w, m, factor, opt, plan, r0, std::min(plan.tile_rows, n - r0));
    }
  });
  if (Status s = format::validate(m); !s) return s;
  return m;
}

Result<const GptqFactor*> GptqFactorCache::get(uint64_t key, const double* h, int64_t k, const GptqOptions& opt) {
  if (factor_ && key == key_ && h == h_ && factor_->k == k && factor_->act_order == opt.act_order &&
      percdamp_ == opt.percdamp && max_damp_retries_ == opt.max_damp_retries) {
    ++reused_;
    return &*factor_;
  }
  factor_.reset();
  Result<GptqFactor> f = prepare_gptq(h, k, opt);
  if (!f) return f.status();
  factor_ = std::move(f).value();
  key_ = key;
  h_ = h;
  percdamp_ = opt.percdamp;
  max_damp_retries_ = opt.max_damp_retries;
  ++prepared_;
  return &*factor_;
}

Result<format::BcqMatrix> gptq(const float* w, int64_t n, int64_t k, const double* h, const GptqOptions& opt,
                               ThreadPool* pool) {
  Result<GptqFactor> f = prepare_gptq(h, k, opt, pool);
  if (!f) return f.status();
  return gptq_quantize(w, n, k, *f, opt, pool);
}

double calibrated_error(const float* w, const format::BcqMatrix& q, const double* h, ThreadPool* pool) {
  const int64_t n = q.n;
  const int64_t k = q.k;
  // Rows in tiles: Δ (tile×k) by H through OpenBLAS's DSYMM (lower triangle of H read), then
  // Σ Δ ∘ (Δ H). The Δ rows are formed on the pool; the product threads itself.
  constexpr int64_t kTile = 64;
  std::vector<double> delta(static_cast<size_t>(kTile * k));
  std::vector<double> dh(static_cast<size_t>(kTile * k));
  double total = 0.0;
  for (int64_t r0 = 0; r0 < n; r0 += kTile) {
    const int64_t rows = std::min(kTile, n - r0);
    run_parallel(pool, rows, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        double* d = delta.data() + t * k;
        format::dequantize_row(q, r0 + t, d);
        const float* wr = w + (r0 + t) * k;
        for (int64_t c = 0; c < k; ++c) d[c] = static_cast<double>(wr[c]) - d[c];
      }
    });
    cblas_dsymm(CblasRowMajor, CblasRight, CblasLower, static_cast<blasint>(rows), static_cast<blasint>(k), 1.0, h,
                static_cast<blasint>(k), delta.data(), static_cast<blasint>(k), 0.0, dh.data(), static_cast<blasint>(k));
    total += dot(delta.data(), dh.data(), rows * k);
  }
  return total;
}

Result<OrientationChoice> choose_orientation(const float* w, int64_t n, int64_t k, const double* h,
                                             const OrientationOptions& opt, ThreadPool* pool) {
  if (h == nullptr) return Status::invalid("choose_orientation: null Hessian");
  std::optional<GptqFactor> own;
  const GptqFactor* factor = opt.factor;
  if (opt.use_gptq && factor == nullptr) {
    Result<GptqFactor> f = prepare_gptq(h, k, opt.gptq, pool);
    if (!f) return f.status();
    own = std::move(f).value();
    factor = &*own;
  }
  std::vector<double> importance;  // diag(H) for the plain quantizers' weighted fits
  if (!opt.use_gptq && opt.gptq.importance) {
    importance.resize(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) importance[static_cast<size_t>(i)] = h[i * k + i];
  }
  OrientationChoice out;
  out.error_per_oc = out.error_per_ic = std::numeric_limits<double>::infinity();
  std::optional<BcqMatrix> best;
  std::string skipped;
  for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
    GptqOptions g = opt.gptq;
    g.cfg.orientation = o;
    if (o == Orientation::kPerIC && opt.g_per_ic > 0) g.cfg.g = opt.g_per_ic;
    if (Status s = format::validate_config(g.cfg, n, k); !s) {
      skipped += std::string(skipped.empty() ? "" : "; ") + format::orientation_name(o) + ": " + s.message();
      continue;
    }
    Result<BcqMatrix> m = opt.use_gptq ? gptq_quantize(w, n, k, *factor, g, pool)
                                       : quantize(w, n, k, QuantOptions{g.method, g.cfg, g.iterations, false, g.scale_bits}, pool, importance);
    if (!m) return m.status();
    const double e = calibrated_error(w, *m, h, pool);
    (o == Orientation::kPerOC ? out.error_per_oc : out.error_per_ic) = e;
    if (!best || e < (out.chosen == Orientation::kPerOC ? out.error_per_oc : out.error_per_ic)) {
      best = std::move(*m);
      out.chosen = o;
    }
  }
  if (!best) return Status::invalid("choose_orientation: no orientation fits: " + skipped);
  out.matrix = std::move(*best);
  return out;
}

}  // namespace lutq::quant
