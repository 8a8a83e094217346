// Loss-aware clipping search (quant/clip_search.h).
#include "quant/clip_search.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "core/thread_pool.h"
#include "quant/scale_fit.h"

namespace lutq::quant {
namespace {

// Rows per product: bounds the Δ and ΔH tiles (2 · 64 · k values).
constexpr int64_t kTileRows = 64;

void run_on(ThreadPool* pool, int64_t count, FunctionRef<void(int64_t, int64_t)> fn) {
  if (pool != nullptr) {
    pool->parallel_for(count, 1, fn);
  } else {
    fn(0, count);
  }
}

Status check_ratios(std::vector<double>& ratios);

}  // namespace

void detail::copy_bcq_row(const format::BcqMatrix& from, format::BcqMatrix& to, int64_t r) {
  const int q = from.cfg.q;
  const int64_t rb = from.row_bytes();
  for (int i = 0; i < q; ++i) {
    const auto at = static_cast<size_t>((i * from.n + r) * rb);
    std::copy_n(from.bits.begin() + static_cast<std::ptrdiff_t>(at), rb, to.bits.begin() + static_cast<std::ptrdiff_t>(at));
  }
  const int64_t groups = from.k / from.cfg.g;
  const auto a = static_cast<std::ptrdiff_t>(r * groups * q);
  std::copy_n(from.alpha.begin() + a, groups * q, to.alpha.begin() + a);
  if (from.cfg.has_offset) {
    const auto o = static_cast<std::ptrdiff_t>(r * groups);
    std::copy_n(from.offset.begin() + o, groups, to.offset.begin() + o);
  }
}

namespace {

Status check_ratios(std::vector<double>& ratios) {
  for (double t : ratios) {
    if (!(t > 0.0 && t <= 1.0)) {
      return Status::invalid("clip search: ratio " + std::to_string(t) + " must be in (0, 1]");
    }
  }
  if (std::find(ratios.begin(), ratios.end(), 1.0) == ratios.end()) ratios.push_back(1.0);
  std::sort(ratios.begin(), ratios.end(), std::greater<>());
  ratios.erase(std::unique(ratios.begin(), ratios.end()), ratios.end());
  return Status::ok();
}

}  // namespace

std::vector<double> row_calibrated_errors(const float* w, const format::BcqMatrix& q, const double* h,
                                          std::span<const float> hf, ThreadPool* pool) {
  const int64_t n = q.n;
  const int64_t k = q.k;
  const bool fp32 = !hf.empty();
  std::vector<double> err(static_cast<size_t>(n), 0.0);
  std::vector<double> delta(static_cast<size_t>(kTileRows * k));
  std::vector<double> dh(fp32 ? 0 : static_cast<size_t>(kTileRows * k));
  std::vector<float> delta_f(fp32 ? static_cast<size_t>(kTileRows * k) : 0);
  std::vector<float> dh_f(fp32 ? static_cast<size_t>(kTileRows * k) : 0);
  const auto kk = static_cast<blasint>(k);
  for (int64_t r0 = 0; r0 < n; r0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, n - r0);
    run_on(pool, rows, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        double* d = delta.data() + t * k;
        format::dequantize_row(q, r0 + t, d);
        const float* wr = w + (r0 + t) * k;
        for (int64_t c = 0; c < k; ++c) d[c] = static_cast<double>(wr[c]) - d[c];
        if (fp32) {
          for (int64_t c = 0; c < k; ++c) delta_f[static_cast<size_t>(t * k + c)] = static_cast<float>(d[c]);
        }
      }
    });
    const auto m = static_cast<blasint>(rows);
    if (fp32) {
      cblas_ssymm(CblasRowMajor, CblasRight, CblasLower, m, kk, 1.0f, hf.data(), kk, delta_f.data(), kk, 0.0f,
                  dh_f.data(), kk);
    } else {
      cblas_dsymm(CblasRowMajor, CblasRight, CblasLower, m, kk, 1.0, h, kk, delta.data(), kk, 0.0, dh.data(), kk);
    }
    run_on(pool, rows, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        double e = 0.0;
        for (int64_t c = 0; c < k; ++c) {
          const auto i = static_cast<size_t>(t * k + c);
          e += delta[i] * (fp32 ? static_cast<double>(dh_f[i]) : dh[i]);
        }
        err[static_cast<size_t>(r0 + t)] = e;
      }
    });
  }
  return err;
}

Result<format::BcqMatrix> clip_search(const float* w, int64_t n, int64_t k, const double* h, const QuantOptions& opt,
                                      const ClipSearchOptions& search, ThreadPool* pool,
                                      std::span<const double> importance, ClipSearchReport* report) {
  if (h == nullptr) return Status::invalid("clip search: needs the calibration second moment H (--calib)");
  if (opt.cfg.orientation != format::Orientation::kPerOC) {
    return Status::invalid("clip search: per-OC groups only (the ratio is chosen per output row)");
  }
  std::vector<double> ratios = search.ratios;
  if (Status s = check_ratios(ratios); !s) return s;
  for (int64_t i = 0; i < k * k; ++i) {
    if (!std::isfinite(h[i])) return Status::invalid("clip search: H has a non-finite entry at " + std::to_string(i));
  }
  QuantOptions fit = opt;
  fit.scale_bits = 0;  // compressed after the search
  fit.clip = 1.0;
  Result<format::BcqMatrix> plain = quantize(w, n, k, fit, pool, importance);
  if (!plain) return Status(plain.status().code(), "clip search: " + plain.status().message());
  const std::vector<float> hf(h, h + k * k);
  std::vector<double> best_err = row_calibrated_errors(w, *plain, h, hf, pool);
  format::BcqMatrix best = *plain;
  std::vector<size_t> chosen(static_cast<size_t>(n), 0);
  for (size_t c = 1; c < ratios.size(); ++c) {
    fit.clip = ratios[c];
    Result<format::BcqMatrix> cand = quantize(w, n, k, fit, pool, importance);
    if (!cand) return Status(cand.status().code(), "clip search: " + cand.status().message());
    const std::vector<double> err = row_calibrated_errors(w, *cand, h, hf, pool);
    for (int64_t r = 0; r < n; ++r) {
      if (!(err[static_cast<size_t>(r)] < best_err[static_cast<size_t>(r)])) continue;
      best_err[static_cast<size_t>(r)] = err[static_cast<size_t>(r)];
      chosen[static_cast<size_t>(r)] = c;
      detail::copy_bcq_row(*cand, best, r);
    }
  }
  // The exact comparison: a row whose choice is not below the plain fit in double goes back.
  const std::vector<double> plain_exact = row_calibrated_errors(w, *plain, h, {}, pool);
  const std::vector<double> best_exact = row_calibrated_errors(w, best, h, {}, pool);
  ClipSearchReport rep;
  rep.ratios = ratios;
  rep.rows.assign(ratios.size(), 0);
  for (int64_t r = 0; r < n; ++r) {
    const auto i = static_cast<size_t>(r);
    if (chosen[i] != 0 && !(best_exact[i] < plain_exact[i])) {
      detail::copy_bcq_row(*plain, best, r);
      chosen[i] = 0;
    }
    ++rep.rows[chosen[i]];
    rep.plain_error += plain_exact[i];
    rep.chosen_error += chosen[i] == 0 ? plain_exact[i] : best_exact[i];
  }
  if (opt.scale_bits > 0) {
    if (Status s = compress_scales(w, importance, opt.scale_bits, best, pool); !s) return s;
  }
  if (report != nullptr) *report = rep;
  return best;
}

}  // namespace lutq::quant
