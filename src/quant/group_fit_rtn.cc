// RTN group fits (quantize.h): the range-covering uniform grid, and its importance-weighted
// variant, which chooses among narrower uniform grids by the weighted error.
#include <algorithm>
#include <array>
#include <cmath>

#include "quant/group_fit.h"

namespace lutq::quant::detail {
namespace {

constexpr double kFp16MinSubnormal = 5.9604644775390625e-08;  // 2^-24
// Shares of the half range the weighted RTN tries (1 first: the plain RTN grid wins ties).
constexpr double kRangeShares[] = {1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5};

// Smallest fp16 value >= x, for 0 <= x (may be +inf when x is beyond the fp16 range).
double round_fp16_up(double x) {
  float r = round_to_fp16(static_cast<float>(x));
  if (static_cast<double>(r) < x) r = fp16_to_fp32(static_cast<uint16_t>(fp32_to_fp16(r) + 1));
  return r;
}

// α_0 = s/2 of a uniform grid z ± α_0·(2^q − 1) covering `half` around its centre: the
// smallest fp16 value that does, at least the smallest subnormal (so a constant group still gets
// a valid tiny step), saturated so α_{q−1} = α_0·2^(q−1) stays finite (exact: a power of two).
double rtn_half_step(double half, int q) {
  const int levels = (1 << q) - 1;
  double a0 = std::max(round_fp16_up(half / levels), kFp16MinSubnormal);
  const double top = std::ldexp(1.0, q - 1);
  if (a0 * top > kFp16Max) a0 = kFp16Max / top;
  return a0;
}

}  // namespace

double clamp_half_step(double a0, int q) {
  const double top = std::ldexp(1.0, q - 1);
  a0 = std::max(round_fp16_sat(a0), kFp16MinSubnormal);
  return a0 * top > kFp16Max ? kFp16Max / top : a0;
}

double GroupFitter::rtn_assign(const float* v, int64_t len, int q, double z, double a0, uint8_t* codes) const {
  const int levels = (1 << q) - 1;
  const double step = 2.0 * a0;
  const double centre = 0.5 * levels;
  double err = 0.0;
  for (int64_t e = 0; e < len; ++e) {
    const double x = v[e];
    const double t = std::floor((x - z) / step + centre + 0.5);
    const int c = static_cast<int>(std::clamp(t, 0.0, static_cast<double>(levels)));
    codes[e] = static_cast<uint8_t>(c);
    const double d = x - (z + step * (c - centre));
    err += weight_of(e) * (d * d);
  }
  return err;
}

double GroupFitter::fit_rtn(const float* v, int64_t len, int q, bool with_offset, float* alpha, float* offset,
                            uint8_t* codes) {
  float lo = v[0];
  float hi = v[0];
  for (int64_t e = 1; e < len; ++e) {
    lo = std::min(lo, v[e]);
    hi = std::max(hi, v[e]);
  }
  const double z = with_offset ? round_fp16_sat(0.5 * (static_cast<double>(lo) + static_cast<double>(hi))) : 0.0;
  const double half = std::max({static_cast<double>(hi) - z, z - static_cast<double>(lo), 0.0});
  const double a0 = rtn_half_step(half, q);
  for (int i = 0; i < q; ++i) alpha[i] = static_cast<float>(std::ldexp(a0, i));
  *offset = static_cast<float>(z);
  const double err = rtn_assign(v, len, q, z, a0, codes);
  // A group on a coarser grid than its range's (codes that do not reach both ends) keeps it.
  double gz = 0.0;
  double ga = 0.0;
  if (!with_offset || err == 0.0 || !exact_grid(v, len, q, &gz, &ga)) return err;
  grid_codes_.resize(static_cast<size_t>(len));
  const double grid_err = rtn_assign(v, len, q, gz, ga, grid_codes_.data());
  if (!(grid_err < err)) return err;
  for (int i = 0; i < q; ++i) alpha[i] = static_cast<float>(std::ldexp(ga, i));
  *offset = static_cast<float>(gz);
  std::copy(grid_codes_.begin(), grid_codes_.end(), codes);
  return grid_err;
}

bool GroupFitter::exact_grid(const float* v, int64_t len, int q, double* z, double* a0) {
  const int levels = (1 << q) - 1;
  distinct_.assign(v, v + len);
  std::sort(distinct_.begin(), distinct_.end());
  distinct_.erase(std::unique(distinct_.begin(), distinct_.end()), distinct_.end());
  const size_t count = distinct_.size();
  if (count < 2 || count > static_cast<size_t>(levels) + 1 || !std::isfinite(distinct_.front()) ||
      !std::isfinite(distinct_.back())) {
    return false;
  }
  double gap = distinct_[1] - distinct_[0];
  for (size_t j = 2; j < count; ++j) gap = std::min(gap, distinct_[j] - distinct_[j - 1]);
  const double lo = distinct_.front();
  const double range = distinct_.back() - lo;
  // The step is the smallest gap or a fraction of it (codes 0, 2, 3 leave gaps 2s and s; codes
  // 0, 2, 5 leave 2s and 3s). The source's own rounding (fp32 products) is far below 1e-3 steps.
  // Any two values are on a grid (and so may be a few by chance): such a grid costs nothing, as
  // the caller keeps it only where its error is below the range-covering grid's.
  constexpr double kTolerance = 1e-3;
  for (int div = 1; div <= 4; ++div) {
    const double s = gap / div;
    const double span = std::round(range / s);
    if (span > levels) return false;
    bool on_grid = true;
    for (size_t j = 1; j < count && on_grid; ++j) {
      const double t = (distinct_[j] - lo) / s;
      on_grid = std::fabs(t - std::round(t)) <= kTolerance;
    }
    if (!on_grid) continue;
    // The finest grid holding every value: the step divided by the largest integer that keeps the
    // span within the codes (a group of few distinct values, e.g. a clamped one or two values,
    // would otherwise get a grid far coarser than its range), the used codes centred.
    const double sub = std::max(1.0, std::floor(levels / std::max(span, 1.0)));
    const double fine = s / sub;
    const double first = std::floor(0.5 * (levels - span * sub));
    *a0 = clamp_half_step(0.5 * fine, q);
    *z = round_fp16_sat(lo + (0.5 * levels - first) * fine);
    return true;
  }
  return false;
}

// Candidates: the plain RTN grid, then grids covering a share t < 1 of the half range around the
// same centre (the outermost weights clamp to the end values). Each candidate's codes are also
// refitted: with u = c − (2^q−1)/2 the weighted least squares for step s and centre z,
//   min Σ d·(v − z − s·u)²:  [Σd·u²  Σd·u; Σd·u  Σd] [s; z] = [Σd·u·v; Σd·v]  (z = 0 without offset),
// rounded to fp16 (α_0 = s/2) and the codes chosen again. The lowest weighted error wins; ties
// keep the earlier candidate, so the result is never worse than plain RTN in the weighted error.
double GroupFitter::fit_rtn_weighted(const float* v, int64_t len, int q, bool with_offset, float* alpha,
                                     float* offset, uint8_t* codes) {
  double best = fit_rtn(v, len, q, with_offset, alpha, offset, codes);
  const double z0 = *offset;
  const double a_full = alpha[0];
  double lo = v[0];
  double hi = v[0];
  for (int64_t e = 1; e < len; ++e) {
    lo = std::min(lo, static_cast<double>(v[e]));
    hi = std::max(hi, static_cast<double>(v[e]));
  }
  const double half = std::max({hi - z0, z0 - lo, 0.0});
  const double centre = 0.5 * ((1 << q) - 1);
  trial_codes_.resize(static_cast<size_t>(len));
  uint8_t* trial = trial_codes_.data();
  const auto consider = [&](double z, double a0) {
    const double err = rtn_assign(v, len, q, z, a0, trial);
    if (!(err < best)) return;
    best = err;
    for (int i = 0; i < q; ++i) alpha[i] = static_cast<float>(std::ldexp(a0, i));
    *offset = static_cast<float>(z);
    std::copy(trial, trial + len, codes);
  };
  for (double share : kRangeShares) {
    const double a0 = share == 1.0 ? a_full : rtn_half_step(share * half, q);
    if (share != 1.0) consider(z0, a0);
    // The weighted least-squares refit of (s, z) on this candidate's codes.
    rtn_assign(v, len, q, z0, a0, trial);
    std::array<double, 5> m{};  // Σd·u², Σd·u, Σd, Σd·u·v, Σd·v
    for (int64_t e = 0; e < len; ++e) {
      const double d = weight_of(e);
      const double u = trial[e] - centre;
      m[0] += d * u * u;
      m[1] += d * u;
      m[2] += d;
      m[3] += d * u * v[e];
      m[4] += d * v[e];
    }
    double s = 0.0;
    double z = 0.0;
    if (with_offset) {
      const double det = m[0] * m[2] - m[1] * m[1];
      if (!(det > 1e-12 * m[0] * m[2])) continue;
      s = (m[3] * m[2] - m[1] * m[4]) / det;
      z = (m[0] * m[4] - m[1] * m[3]) / det;
    } else {
      if (!(m[0] > 0.0)) continue;
      s = m[3] / m[0];
    }
    if (!(s > 0.0) || !std::isfinite(z)) continue;
    consider(round_fp16_sat(z), clamp_half_step(0.5 * s, q));
  }
  return best;
}

}  // namespace lutq::quant::detail
