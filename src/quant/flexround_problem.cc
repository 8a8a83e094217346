// FlexRound's loss and gradient for one layer (quant/flexround.h has the formulas).
#include "quant/flexround_problem.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/check.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "quant/group_fit.h"

namespace lutq::quant::detail {
namespace {

// Rows per tile: the unit of the pool's work and of the ordered reductions (fixed, so results
// do not depend on the thread count).
constexpr int64_t kTileRows = 16;

void for_tiles(ThreadPool* pool, int64_t n, FunctionRef<void(int64_t, int64_t, int64_t)> fn) {
  const int64_t tiles = (n + kTileRows - 1) / kTileRows;
  const auto body = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) fn(t, t * kTileRows, std::min(n, (t + 1) * kTileRows));
  };
  if (pool != nullptr) {
    pool->parallel_for(tiles, 1, body);
  } else {
    body(0, tiles);
  }
}

// One weight's quantization: its effective code (round(u), or the surrogate's u + rho), which end
// it is clamped at, u and S.
struct Element {
  double code, u, s;
  int side;
};

}  // namespace

FlexParams FlexParams::zeros_like(const FlexParams& p) {
  FlexParams z;
  z.log_s1.assign(p.log_s1.size(), 0.0);
  z.shift.assign(p.shift.size(), 0.0);
  z.log_s2.assign(p.log_s2.size(), 0.0);
  z.log_s3.assign(p.log_s3.size(), 0.0);
  z.log_s4.assign(p.log_s4.size(), 0.0);
  return z;
}

FlexProblem::FlexProblem(const float* w, int64_t n, int64_t k, const double* h, const format::BcqMatrix& start,
                         bool stored_grid, bool double_product, ThreadPool* pool)
    : w_(w), n_(n), k_(k), g_(start.cfg.g), groups_(k / start.cfg.g), q_(start.cfg.q), h_(h),
      stored_grid_(stored_grid), double_product_(double_product), pool_(pool) {
  LUTQ_CHECK(start.n == n && start.k == k && start.cfg.has_offset &&
             start.cfg.orientation == format::Orientation::kPerOC);
  const auto sets = static_cast<size_t>(n * groups_);
  z0_.resize(sets);
  step0_.resize(sets);
  for (size_t s = 0; s < sets; ++s) {
    step0_[s] = 2.0 * fp16_to_fp32(start.alpha[s * static_cast<size_t>(q_)]);
    z0_[s] = fp16_to_fp32(start.offset[s]);
  }
  const auto nk = static_cast<size_t>(n * k);
  delta_.resize(nk);
  dh_.resize(nk);
  scale_.resize(nk);
  if (!double_product_) {
    hf_.resize(static_cast<size_t>(k * k));
    for (size_t i = 0; i < hf_.size(); ++i) hf_[i] = static_cast<float>(h[i]);
    delta_f_.resize(nk);
    dh_f_.resize(nk);
  }
  const int64_t tiles = (n + kTileRows - 1) / kTileRows;
  row_err_.resize(static_cast<size_t>(n));
  codes_.resize(nk);
  best_err_.assign(static_cast<size_t>(n), std::numeric_limits<double>::infinity());
  best_codes_.resize(nk);
  best_a0_.resize(sets);
  best_z_.resize(sets);
  col_partial_.resize(static_cast<size_t>(tiles * k));
  // tr(W H Wᵀ) in double: the loss's normaliser.
  for (size_t i = 0; i < nk; ++i) delta_[i] = w[i];
  cblas_dsymm(CblasRowMajor, CblasRight, CblasLower, static_cast<blasint>(n), static_cast<blasint>(k), 1.0, h,
              static_cast<blasint>(k), delta_.data(), static_cast<blasint>(k), 0.0, dh_.data(), static_cast<blasint>(k));
  double norm = 0.0;
  for (size_t i = 0; i < nk; ++i) norm += delta_[i] * dh_[i];
  norm_ = norm > 0.0 && std::isfinite(norm) ? norm : 1.0;
}

FlexParams FlexProblem::initial() const {
  FlexParams p;
  p.log_s1.resize(step0_.size());
  for (size_t s = 0; s < step0_.size(); ++s) p.log_s1[s] = std::log(step0_[s]);
  p.shift.assign(step0_.size(), 0.0);
  p.log_s2.assign(static_cast<size_t>(n_ * k_), 0.0);
  p.log_s3.assign(static_cast<size_t>(n_), 0.0);
  p.log_s4.assign(static_cast<size_t>(k_), 0.0);
  return p;
}

FlexProblem::Grid FlexProblem::grid(const FlexParams& p, int64_t set) const {
  const auto s = static_cast<size_t>(set);
  Grid gr{std::exp(p.log_s1[s]), z0_[s] + step0_[s] * p.shift[s]};
  if (stored_grid_) {
    gr.s1 = 2.0 * clamp_half_step(0.5 * gr.s1, q_);
    gr.z = round_fp16_sat(gr.z);
  }
  return gr;
}

namespace {

// The element at flat index i of row r with its group's grid; `frozen` replaces the rounding.
inline Element quantize_element(double w, double s, const double* grid, int levels, const FrozenRounding* frozen,
                                size_t i) {
  const double s1 = grid[0];
  const double z = grid[1];
  const double m = 0.5 * levels;
  Element e{0.0, (w - z) / (s1 * s) + m, s, 0};
  if (frozen != nullptr) {
    e.side = frozen->side[i];
    e.code = e.side < 0 ? 0.0 : e.side > 0 ? levels : e.u + frozen->rho[i];
    return e;
  }
  const double t = std::floor(e.u + 0.5);
  e.side = t < 0.0 ? -1 : t > levels ? 1 : 0;
  e.code = std::clamp(t, 0.0, static_cast<double>(levels));
  return e;
}

}  // namespace

void FlexProblem::residual_rows(const FlexParams& p, const FrozenRounding* frozen, int64_t r0, int64_t r1) {
  const int levels = (1 << q_) - 1;
  const double m = 0.5 * levels;
  for (int64_t r = r0; r < r1; ++r) {
    const double e3 = p.log_s3[static_cast<size_t>(r)];
    for (int64_t j = 0; j < groups_; ++j) {
      const Grid gr = grid(p, r * groups_ + j);
      const double gv[2] = {gr.s1, gr.z};
      for (int64_t c = j * g_; c < (j + 1) * g_; ++c) {
        const auto i = static_cast<size_t>(r * k_ + c);
        const double s = std::exp(p.log_s2[i] + e3 + p.log_s4[static_cast<size_t>(c)]);
        scale_[i] = s;
        const Element e = quantize_element(w_[i], s, gv, levels, frozen, i);
        delta_[i] = w_[i] - (gr.z + gr.s1 * (e.code - m));
        if (frozen == nullptr) codes_[i] = static_cast<uint8_t>(e.code);
      }
    }
  }
}

void FlexProblem::product() {
  const auto n = static_cast<blasint>(n_);
  const auto k = static_cast<blasint>(k_);
  if (double_product_) {
    cblas_dsymm(CblasRowMajor, CblasRight, CblasLower, n, k, 1.0, h_, k, delta_.data(), k, 0.0, dh_.data(), k);
    return;
  }
  for_tiles(pool_, n_, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t i = r0 * k_; i < r1 * k_; ++i) delta_f_[static_cast<size_t>(i)] = static_cast<float>(delta_[static_cast<size_t>(i)]);
  });
  cblas_ssymm(CblasRowMajor, CblasRight, CblasLower, n, k, 1.0f, hf_.data(), k, delta_f_.data(), k, 0.0f,
              dh_f_.data(), k);
  for_tiles(pool_, n_, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t i = r0 * k_; i < r1 * k_; ++i) dh_[static_cast<size_t>(i)] = dh_f_[static_cast<size_t>(i)];
  });
}

void FlexProblem::gradient_rows(const FlexParams& p, const FrozenRounding* frozen, FlexParams& grad, int64_t tile,
                                int64_t r0, int64_t r1) {
  const int levels = (1 << q_) - 1;
  const double m = 0.5 * levels;
  double* cols = col_partial_.data() + tile * k_;
  std::fill(cols, cols + k_, 0.0);
  for (int64_t r = r0; r < r1; ++r) {
    double g3 = 0.0;
    for (int64_t j = 0; j < groups_; ++j) {
      const int64_t set = r * groups_ + j;
      const Grid gr = grid(p, set);
      const double gv[2] = {gr.s1, gr.z};
      double g1 = 0.0;
      double gz = 0.0;
      for (int64_t c = j * g_; c < (j + 1) * g_; ++c) {
        const auto i = static_cast<size_t>(r * k_ + c);
        const double s = scale_[i];  // residual_rows' S of the same parameters
        const Element e = quantize_element(w_[i], s, gv, levels, frozen, i);
        const double dl = -2.0 * dh_[i] / norm_;  // ∂L/∂ŵ
        double d_log_s = 0.0;
        if (e.side == 0) {
          g1 += dl * gr.s1 * (e.code - e.u);
          gz += dl * (1.0 - 1.0 / s);
          d_log_s = dl * (-gr.s1 * (e.u - m));
        } else {
          g1 += dl * gr.s1 * (e.code - m);
          gz += dl;
        }
        grad.log_s2[i] = d_log_s;
        g3 += d_log_s;
        cols[c] += d_log_s;
      }
      grad.log_s1[static_cast<size_t>(set)] = g1;
      grad.shift[static_cast<size_t>(set)] = gz * step0_[static_cast<size_t>(set)];
    }
    grad.log_s3[static_cast<size_t>(r)] = g3;
  }
}

double FlexProblem::evaluate(const FlexParams& p, FlexParams* grad, const FrozenRounding* frozen) {
  for_tiles(pool_, n_, [&](int64_t, int64_t r0, int64_t r1) { residual_rows(p, frozen, r0, r1); });
  product();
  for_tiles(pool_, n_, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      double sum = 0.0;
      for (int64_t i = r * k_; i < (r + 1) * k_; ++i) sum += delta_[static_cast<size_t>(i)] * dh_[static_cast<size_t>(i)];
      row_err_[static_cast<size_t>(r)] = sum;
    }
  });
  double loss = 0.0;
  for (double e : row_err_) loss += e;
  loss /= norm_;
  if (grad == nullptr) return loss;
  for_tiles(pool_, n_, [&](int64_t t, int64_t r0, int64_t r1) { gradient_rows(p, frozen, *grad, t, r0, r1); });
  std::fill(grad->log_s4.begin(), grad->log_s4.end(), 0.0);
  for (size_t t = 0; t < col_partial_.size() / static_cast<size_t>(k_); ++t) {
    const double* cols = col_partial_.data() + t * static_cast<size_t>(k_);
    for (int64_t c = 0; c < k_; ++c) grad->log_s4[static_cast<size_t>(c)] += cols[c];
  }
  return loss;
}

FrozenRounding FlexProblem::freeze(const FlexParams& p) const {
  const int levels = (1 << q_) - 1;
  FrozenRounding f;
  f.rho.assign(static_cast<size_t>(n_ * k_), 0.0);
  f.side.assign(static_cast<size_t>(n_ * k_), 0);
  for (int64_t r = 0; r < n_; ++r) {
    for (int64_t j = 0; j < groups_; ++j) {
      const Grid gr = grid(p, r * groups_ + j);
      const double gv[2] = {gr.s1, gr.z};
      for (int64_t c = j * g_; c < (j + 1) * g_; ++c) {
        const auto i = static_cast<size_t>(r * k_ + c);
        const double s = std::exp(p.log_s2[i] + p.log_s3[static_cast<size_t>(r)] + p.log_s4[static_cast<size_t>(c)]);
        const Element e = quantize_element(w_[i], s, gv, levels, nullptr, i);
        f.side[i] = static_cast<int8_t>(e.side);
        f.rho[i] = e.side == 0 ? e.code - e.u : 0.0;
      }
    }
  }
  return f;
}

void FlexProblem::keep_best_rows(const FlexParams& p) {
  for_tiles(pool_, n_, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const auto ri = static_cast<size_t>(r);
      if (!(row_err_[ri] < best_err_[ri])) continue;
      best_err_[ri] = row_err_[ri];
      std::copy_n(codes_.begin() + r * k_, k_, best_codes_.begin() + r * k_);
      for (int64_t j = 0; j < groups_; ++j) {
        const auto s = static_cast<size_t>(r * groups_ + j);
        best_a0_[s] = clamp_half_step(0.5 * std::exp(p.log_s1[s]), q_);
        best_z_[s] = round_fp16_sat(z0_[s] + step0_[s] * p.shift[s]);
      }
    }
  });
}

format::BcqMatrix FlexProblem::best_matrix() const {
  format::BcqConfig cfg{q_, g_, format::Orientation::kPerOC, true};
  Result<format::BcqMatrix> made = format::make_empty(n_, k_, cfg);
  LUTQ_CHECK(made.is_ok());
  format::BcqMatrix m = std::move(made).value();
  const int64_t row_bytes = m.row_bytes();
  for_tiles(pool_, n_, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t j = 0; j < groups_; ++j) {
        const auto s = static_cast<size_t>(r * groups_ + j);
        for (int i = 0; i < q_; ++i) {
          m.alpha[s * static_cast<size_t>(q_) + static_cast<size_t>(i)] = fp32_to_fp16(static_cast<float>(std::ldexp(best_a0_[s], i)));
        }
        m.offset[s] = fp32_to_fp16(static_cast<float>(best_z_[s]));
      }
      for (int64_t c = 0; c < k_; ++c) {
        const unsigned code = best_codes_[static_cast<size_t>(r * k_ + c)];
        for (int b = 0; b < q_; ++b) {
          if ((code >> b) & 1u) m.bits[static_cast<size_t>((b * n_ + r) * row_bytes + c / 8)] |= static_cast<uint8_t>(1u << (c % 8));
        }
      }
    }
  });
  return m;
}

format::BcqMatrix FlexProblem::to_matrix(const FlexParams& p) const {
  format::BcqConfig cfg{q_, g_, format::Orientation::kPerOC, true};
  Result<format::BcqMatrix> made = format::make_empty(n_, k_, cfg);
  LUTQ_CHECK(made.is_ok());
  format::BcqMatrix m = std::move(made).value();
  const int levels = (1 << q_) - 1;
  const int64_t row_bytes = m.row_bytes();
  for_tiles(pool_, n_, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t j = 0; j < groups_; ++j) {
        const int64_t set = r * groups_ + j;
        const auto s = static_cast<size_t>(set);
        // The stored grid, whatever the forward used.
        const double a0 = clamp_half_step(0.5 * std::exp(p.log_s1[s]), q_);
        const double z = round_fp16_sat(z0_[s] + step0_[s] * p.shift[s]);
        for (int i = 0; i < q_; ++i) m.alpha[s * static_cast<size_t>(q_) + static_cast<size_t>(i)] = fp32_to_fp16(static_cast<float>(std::ldexp(a0, i)));
        m.offset[s] = fp32_to_fp16(static_cast<float>(z));
        const double gv[2] = {2.0 * a0, z};
        for (int64_t c = j * g_; c < (j + 1) * g_; ++c) {
          const auto i = static_cast<size_t>(r * k_ + c);
          const double sc =
              std::exp(p.log_s2[i] + p.log_s3[static_cast<size_t>(r)] + p.log_s4[static_cast<size_t>(c)]);
          const auto code = static_cast<unsigned>(quantize_element(w_[i], sc, gv, levels, nullptr, i).code);
          for (int b = 0; b < q_; ++b) {
            if ((code >> b) & 1u) m.bits[static_cast<size_t>((b * n_ + r) * row_bytes + c / 8)] |= static_cast<uint8_t>(1u << (c % 8));
          }
        }
      }
    }
  });
  return m;
}

}  // namespace lutq::quant::detail
