#include "quant/group_fit.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <span>

#include "core/check.h"

namespace lutq::quant::detail {
namespace {

constexpr int kMaxUnknowns = format::kMaxBits + 1;
// Plane-to-plane scale ratios of the geometric grids that seed the alternation (see fit()).
constexpr double kRatiosFewPlanes[] = {0.35, 0.5, 0.6, 0.7, 0.8, 0.9};
constexpr double kRatiosSomePlanes[] = {0.5, 0.7};
constexpr double kRatiosManyPlanes[] = {0.5};

// Solves a[m*m]·x = b by Gaussian elimination with partial pivoting; false when singular
// (a pivot below 1e-10 of the largest diagonal entry) or when the solution is not finite.
bool solve_linear(double* a, double* b, int m, double* x) {
  double scale = 0.0;
  for (int i = 0; i < m; ++i) scale = std::max(scale, std::fabs(a[i * m + i]));
  const double tiny = 1e-10 * scale;
  for (int col = 0; col < m; ++col) {
    int pivot = col;
    for (int r = col + 1; r < m; ++r) {
      if (std::fabs(a[r * m + col]) > std::fabs(a[pivot * m + col])) pivot = r;
    }
    if (!(std::fabs(a[pivot * m + col]) > tiny)) return false;
    if (pivot != col) {
      for (int c = 0; c < m; ++c) std::swap(a[pivot * m + c], a[col * m + c]);
      std::swap(b[pivot], b[col]);
    }
    for (int r = col + 1; r < m; ++r) {
      const double f = a[r * m + col] / a[col * m + col];
      if (f == 0.0) continue;
      for (int c = col; c < m; ++c) a[r * m + c] -= f * a[col * m + c];
      b[r] -= f * b[col];
    }
  }
  for (int r = m - 1; r >= 0; --r) {
    double s = b[r];
    for (int c = r + 1; c < m; ++c) s -= a[r * m + c] * x[c];
    x[r] = s / a[r * m + r];
    if (!std::isfinite(x[r])) return false;
  }
  return true;
}

// Index of the first of a[n] (sorted) not below key, by a branchless binary search.
size_t lower_bound_index(const double* a, size_t n, double key) {
  if (n == 0) return 0;
  const double* base = a;
  while (n > 1) {
    const size_t half = n / 2;
    base = base[half] < key ? base + half : base;
    n -= half;
  }
  return static_cast<size_t>(base - a) + (*base < key ? 1 : 0);
}

// In-place Walsh–Hadamard transform of x[n], n a power of two:
// x[mask] ← Σ_c x[c]·(−1)^{popcount(c & mask)}.
void walsh_hadamard(double* x, int n) {
  for (int h = 1; h < n; h *= 2) {
    for (int i = 0; i < n; i += 2 * h) {
      for (int j = i; j < i + h; ++j) {
        const double u = x[j];
        const double w = x[j + h];
        x[j] = u + w;
        x[j + h] = u - w;
      }
    }
  }
}

}  // namespace

void ValueGrid::build(const double* alpha, int q, double offset) {
  const auto full = size_t{1} << q;
  values_.resize(full);
  codes_.resize(full);
  tmp_values_.resize(full);
  tmp_codes_.resize(full);
  values_[0] = offset;
  codes_[0] = 0;
  // Planes in order of growing |α|: a plane at least as large as the sum of those before it
  // (always so for uniform grids) splits the set into two halves that need no merging.
  std::array<int, format::kMaxBits> order{};
  for (int i = 0; i < q; ++i) order[static_cast<size_t>(i)] = i;
  for (int k = 1; k < q; ++k) {  // insertion sort by |α|, stable
    const int plane = order[static_cast<size_t>(k)];
    int pos = k;
    for (; pos > 0 && std::fabs(alpha[order[static_cast<size_t>(pos - 1)]]) > std::fabs(alpha[plane]); --pos) {
      order[static_cast<size_t>(pos)] = order[static_cast<size_t>(pos - 1)];
    }
    order[static_cast<size_t>(pos)] = plane;
  }
  size_t size = 1;
  for (int k = 0; k < q; ++k) {
    const int i = order[static_cast<size_t>(k)];
    // Lower half: value − |α_i|; upper half: value + |α_i|. Each half stays sorted; merge them.
    const double mag = std::fabs(alpha[i]);
    const auto plane = static_cast<uint8_t>(1u << i);
    const uint8_t lo_bit = alpha[i] >= 0.0 ? 0 : plane;
    const uint8_t hi_bit = alpha[i] >= 0.0 ? plane : 0;
    const double* src = values_.data();
    const uint8_t* src_codes = codes_.data();
    double* dst = tmp_values_.data();
    uint8_t* dst_codes = tmp_codes_.data();
    if (src[size - 1] - mag <= src[0] + mag) {
      for (size_t a = 0; a < size; ++a) {
        dst[a] = src[a] - mag;
        dst_codes[a] = static_cast<uint8_t>(src_codes[a] | lo_bit);
        dst[size + a] = src[a] + mag;
        dst_codes[size + a] = static_cast<uint8_t>(src_codes[a] | hi_bit);
      }
    } else {
      size_t a = 0;
      size_t b = 0;
      size_t out = 0;
      while (a < size && b < size) {
        const double lo = src[a] - mag;
        const double hi = src[b] + mag;
        const bool take_lo = lo <= hi;
        dst[out] = take_lo ? lo : hi;
        dst_codes[out++] = take_lo ? static_cast<uint8_t>(src_codes[a] | lo_bit)
                                   : static_cast<uint8_t>(src_codes[b] | hi_bit);
        a += take_lo ? 1 : 0;
        b += take_lo ? 0 : 1;
      }
      for (; a < size; ++a, ++out) {
        dst[out] = src[a] - mag;
        dst_codes[out] = static_cast<uint8_t>(src_codes[a] | lo_bit);
      }
      for (; b < size; ++b, ++out) {
        dst[out] = src[b] + mag;
        dst_codes[out] = static_cast<uint8_t>(src_codes[b] | hi_bit);
      }
    }
    size *= 2;
    values_.swap(tmp_values_);
    codes_.swap(tmp_codes_);
  }
  size_ = static_cast<int>(full);
  mids_.resize(full > 1 ? full - 1 : 1);
  for (size_t j = 0; j + 1 < full; ++j) mids_[j] = 0.5 * (values_[j] + values_[j + 1]);
}

double GroupFitter::fit(const float* v, int64_t len, int q, Method method, bool with_offset, int iterations,
                        float* alpha, float* offset, uint8_t* codes, const double* weight) {
  LUTQ_CHECK(len >= 1 && q >= 1 && q <= format::kMaxBits && iterations >= 0);
  // Equal weights make the weighted error a multiple of the plain one: the same problem, so the
  // plain code path runs (bit for bit today's fit). So does a group whose weights sum to 0.
  weight_ = nullptr;
  if (weight != nullptr) {
    double total = 0.0;
    bool equal = true;
    for (int64_t e = 0; e < len; ++e) {
      total += weight[e];
      equal = equal && weight[e] == weight[0];
    }
    if (!equal && total > 0.0) weight_ = weight;
  }
  double err = 0.0;
  if (method == Method::kRtn) {
    err = weight_ != nullptr ? fit_rtn_weighted(v, len, q, with_offset, alpha, offset, codes)
                             : fit_rtn(v, len, q, with_offset, alpha, offset, codes);
  } else {
    err = fit_bcq(v, len, q, method, with_offset, iterations, alpha, offset, codes);
  }
  weight_ = nullptr;
  return err;
}

double GroupFitter::fit_bcq(const float* v, int64_t len, int q, Method method, bool with_offset, int iterations,
                            float* alpha, float* offset, uint8_t* codes) {
  std::array<double, format::kMaxBits> greedy_alpha{};
  double greedy_offset = 0.0;
  fit_greedy_raw(v, len, q, with_offset, greedy_alpha.data(), &greedy_offset);
  double greedy_err = finalize(v, len, q, greedy_alpha.data(), greedy_offset, alpha, offset, codes);
  if (method == Method::kGreedy || iterations == 0) {
    // The stored greedy fit never clips: planes that do not reach the group's extremes lose to
    // the range-covering grid whatever their squared error.
    if (clips(v, len, q, greedy_alpha.data(), greedy_offset)) greedy_err = std::numeric_limits<double>::infinity();
    return keep_simple_fits(v, len, q, with_offset, false, greedy_err, alpha, offset, codes);
  }

  sort_group(v, len);
  State best;
  // From the stored greedy planes.
  State start;
  for (int i = 0; i < q; ++i) start.alpha[static_cast<size_t>(i)] = alpha[i];
  start.offset = *offset;
  start.err = greedy_err;
  cells_from_codes(v, len, q, codes);
  alternate(len, q, with_offset, iterations, start, &best);
  alternate_from_grids(len, q, with_offset, iterations, &best);

  std::array<float, format::kMaxBits> alt_alpha{};
  float alt_offset = 0.0f;
  trial_codes_.resize(static_cast<size_t>(len));
  const double alt_err =
      finalize(v, len, q, best.alpha.data(), best.offset, alt_alpha.data(), &alt_offset, trial_codes_.data());
  // Alternating never loses to the greedy fit.
  greedy_err = keep_simple_fits(v, len, q, with_offset, true, greedy_err, alpha, offset, codes);
  if (alt_err < greedy_err) {
    std::copy(alt_alpha.begin(), alt_alpha.begin() + q, alpha);
    *offset = alt_offset;
    std::copy(trial_codes_.begin(), trial_codes_.end(), codes);
    return alt_err;
  }
  return greedy_err;
}

double GroupFitter::keep_simple_fits(const float* v, int64_t len, int q, bool with_offset, bool may_clip, double err,
                                     float* alpha, float* offset, uint8_t* codes) {
  std::array<float, format::kMaxBits> c_alpha{};
  float c_offset = 0.0f;
  uniform_codes_.resize(static_cast<size_t>(len));
  const auto keep_if_lower = [&](double c_err) {
    if (!(c_err < err)) return;
    std::copy(c_alpha.begin(), c_alpha.begin() + q, alpha);
    *offset = c_offset;
    std::copy(uniform_codes_.begin(), uniform_codes_.end(), codes);
    err = c_err;
  };
  keep_if_lower(fit_rtn(v, len, q, with_offset, c_alpha.data(), &c_offset, uniform_codes_.data()));
  if (weight_ != nullptr) {
    const double* saved = weight_;
    weight_ = nullptr;
    std::array<double, format::kMaxBits> raw_alpha{};
    double raw_offset = 0.0;
    fit_greedy_raw(v, len, q, with_offset, raw_alpha.data(), &raw_offset);
    weight_ = saved;
    if (!may_clip && clips(v, len, q, raw_alpha.data(), raw_offset)) return err;
    keep_if_lower(finalize(v, len, q, raw_alpha.data(), raw_offset, c_alpha.data(), &c_offset, uniform_codes_.data()));
  }
  return err;
}

void GroupFitter::alternate_from_grids(int64_t len, int q, bool with_offset, int iterations, State* best) {
  // From geometric grids around the centre of the range: ratio 0.5 is the uniform (RTN) grid,
  // larger ratios crowd the values towards the centre. Each ratio gives a different order of the
  // 2^q sums, and the alternation cannot leave the order it starts in, so several starts find
  // better minima (and recover an exactly-BCQ group at q <= 3). Many planes need fewer starts.
  const std::span<const double> ratios = q <= 4   ? std::span<const double>(kRatiosFewPlanes)
                                         : q <= 6 ? std::span<const double>(kRatiosSomePlanes)
                                                  : std::span<const double>(kRatiosManyPlanes);
  const double lo = sorted_.front();
  const double hi = sorted_.back();
  const double z = with_offset ? 0.5 * (lo + hi) : 0.0;
  const double half = std::max(hi - z, z - lo);
  State start;
  for (double ratio : ratios) {
    // α_{q−1−j} = A·ratio^j with Σ α = half, so the outermost grid values sit at the range ends.
    double weight = 0.0;
    for (int j = 0; j < q; ++j) weight += std::pow(ratio, j);
    for (int j = 0; j < q; ++j) start.alpha[static_cast<size_t>(q - 1 - j)] = half / weight * std::pow(ratio, j);
    start.offset = z;
    start.err = assign_cells(len, q, start.alpha.data(), start.offset);
    alternate(len, q, with_offset, iterations, start, best);
  }
}

void GroupFitter::alternate(int64_t len, int q, bool with_offset, int iterations, const State& start, State* best) {
  State cur = start;
  for (int it = 0; it < iterations; ++it) {
    State next;
    if (!solve_scales(q, with_offset, next.alpha.data(), &next.offset)) break;
    next.err = assign_cells(len, q, next.alpha.data(), next.offset);
    if (!(next.err <= cur.err)) break;  // only rounding noise makes a round worse: keep the state
    const bool progress = next.err < cur.err * (1.0 - 1e-9);
    cur = next;
    if (!progress) break;
  }
  if (cur.err < best->err) *best = cur;
}

bool GroupFitter::clips(const float* v, int64_t len, int q, const double* alpha, double offset) {
  // The reach of the stored (fp16) grid against the farthest weight, less half the grid's
  // smallest step so a weight just past the end still counts as kept.
  double reach = 0.0;
  double smallest = std::numeric_limits<double>::infinity();
  for (int i = 0; i < q; ++i) {
    const double a = std::fabs(round_fp16_sat(alpha[i]));
    reach += a;
    smallest = std::min(smallest, a);
  }
  const double z = round_fp16_sat(offset);
  for (int64_t e = 0; e < len; ++e) {
    if (std::fabs(v[e] - z) > reach + smallest) return true;
  }
  return false;
}

void GroupFitter::fit_greedy_raw(const float* v, int64_t len, int q, bool with_offset, double* alpha,
                                 double* offset) {
  // Weighted: z and each α_i are weighted means, the minimisers of Σ d·(r − z)² and of
  // Σ d·(|r| − α)² (the unweighted ones with d = 1).
  const auto ulen = static_cast<size_t>(len);
  double total = 0.0;
  for (int64_t e = 0; e < len; ++e) total += weight_of(e);
  double z = 0.0;
  if (with_offset) {
    double sum = 0.0;
    for (int64_t e = 0; e < len; ++e) sum += weight_of(e) * v[e];
    z = round_fp16_sat(sum / total);
  }
  residual_.resize(ulen);
  for (size_t e = 0; e < ulen; ++e) residual_[e] = v[e] - z;
  for (int i = 0; i < q; ++i) {
    double sum_abs = 0.0;
    for (size_t e = 0; e < ulen; ++e) sum_abs += weight_of(static_cast<int64_t>(e)) * std::fabs(residual_[e]);
    const double a = sum_abs / total;
    alpha[i] = a;
    for (size_t e = 0; e < ulen; ++e) residual_[e] -= residual_[e] >= 0.0 ? a : -a;
  }
  *offset = z;
}

double GroupFitter::finalize(const float* v, int64_t len, int q, const double* alpha, double offset,
                             float* alpha_out, float* offset_out, uint8_t* codes) {
  std::array<double, format::kMaxBits> rounded{};
  for (int i = 0; i < q; ++i) {
    rounded[static_cast<size_t>(i)] = round_fp16_sat(alpha[i]);
    alpha_out[i] = static_cast<float>(rounded[static_cast<size_t>(i)]);
  }
  const double z = round_fp16_sat(offset);
  *offset_out = static_cast<float>(z);
  grid_.build(rounded.data(), q, z);
  double err = 0.0;
  grid_.assign(v, len, [&](int64_t e, uint8_t code, double d) {
    codes[e] = code;
    err += weight_of(e) * (d * d);
  });
  return err;
}

void GroupFitter::sort_group(const float* v, int64_t len) {
  const auto ulen = static_cast<size_t>(len);
  prefix0_.resize(ulen + 1);
  prefix1_.resize(ulen + 1);
  prefix2_.resize(ulen + 1);
  prefix0_[0] = 0.0;
  prefix1_[0] = 0.0;
  prefix2_[0] = 0.0;
  if (weight_ == nullptr) {
    sorted_.assign(v, v + ulen);
    std::sort(sorted_.begin(), sorted_.end());
    for (size_t e = 0; e < ulen; ++e) {
      const double x = sorted_[e];
      prefix0_[e + 1] = static_cast<double>(e + 1);
      prefix1_[e + 1] = prefix1_[e] + x;
      prefix2_[e + 1] = prefix2_[e] + x * x;
    }
    return;
  }
  order_.resize(ulen);
  for (size_t e = 0; e < ulen; ++e) order_[e] = e;
  std::sort(order_.begin(), order_.end(), [&](size_t a, size_t b) { return v[a] < v[b] || (v[a] == v[b] && a < b); });
  sorted_.resize(ulen);
  for (size_t e = 0; e < ulen; ++e) {
    const double x = v[order_[e]];
    const double d = weight_[order_[e]];
    sorted_[e] = x;
    prefix0_[e + 1] = prefix0_[e] + d;
    prefix1_[e + 1] = prefix1_[e] + d * x;
    prefix2_[e + 1] = prefix2_[e] + d * x * x;
  }
}

void GroupFitter::cells_from_codes(const float* v, int64_t len, int q, const uint8_t* codes) {
  const auto ncodes = size_t{1} << q;
  code_count_.assign(ncodes, 0.0);
  code_sum_.assign(ncodes, 0.0);
  for (int64_t e = 0; e < len; ++e) {
    const double d = weight_of(e);
    code_count_[codes[e]] += d;
    code_sum_[codes[e]] += d * v[e];
  }
}

double GroupFitter::assign_cells(int64_t len, int q, const double* alpha, double offset) {
  // The elements nearest to grid value j form the run of sorted elements in [mids[j−1], mids[j]).
  grid_.build(alpha, q, offset);
  const double* mids = grid_.mids();
  const double* values = grid_.values();
  const uint8_t* grid_codes = grid_.codes();
  const int size = grid_.size();
  const auto ncodes = static_cast<size_t>(size);
  code_count_.assign(ncodes, 0.0);
  code_sum_.assign(ncodes, 0.0);
  const double* sorted = sorted_.data();
  const auto ulen = static_cast<size_t>(len);
  // Run ends: with few grid values, independent binary searches (they overlap in the pipeline);
  // with many, one sweep over the elements.
  ends_.resize(ncodes);
  size_t* ends = ends_.data();
  if (ncodes * static_cast<size_t>(std::bit_width(ulen)) < ulen + ncodes) {
    for (size_t j = 0; j + 1 < ncodes; ++j) ends[j] = lower_bound_index(sorted, ulen, mids[j]);
  } else {
    size_t pos = 0;
    for (size_t j = 0; j + 1 < ncodes; ++j) {
      while (pos < ulen && sorted[pos] < mids[j]) ++pos;
      ends[j] = pos;
    }
  }
  ends[ncodes - 1] = ulen;
  double err = 0.0;
  size_t lo = 0;
  for (size_t j = 0; j < ncodes; ++j) {
    const size_t hi = ends[j];
    if (hi == lo) continue;
    const double count = prefix0_[hi] - prefix0_[lo];  // Σ d (the element count unweighted)
    const double sum = prefix1_[hi] - prefix1_[lo];
    const double val = values[j];
    // Σ d·(x − val)² over the run, from the prefix sums of d, d·x and d·x².
    err += std::max(0.0, prefix2_[hi] - prefix2_[lo] - 2.0 * val * sum + count * val * val);
    code_count_[grid_codes[j]] = count;
    code_sum_[grid_codes[j]] = sum;
    lo = hi;
  }
  return err;
}

bool GroupFitter::solve_scales(int q, bool with_offset, double* alpha, double* offset) {
  // Normal equations of min Σ_j d_j·(v_j − Σ_i α_i·B_ij − z)² over α (and z); unweighted d = 1.
  // With count[c] = Σ d and sum[c] = Σ d·v over the elements of code c, and s_i(c) = ±1 from
  // bit i of c (B_i·B_j below means Σ_j d_j·B_ij·B_lj, and so on):
  // (B_i·B_j) = Σ_c count[c]·s_i(c)·s_j(c), (B_i·1) = Σ_c count[c]·s_i(c), (B_i·v) = Σ_c sum[c]·s_i(c).
  // Since s_i(c) = −(−1)^{bit i of c}, all of these are entries of the Walsh–Hadamard transforms
  // H(x)[mask] = Σ_c x[c]·(−1)^{popcount(c & mask)}, computed in O(q·2^q): (B_i·B_j) = H(count)[i|j],
  // (B_i·1) = −H(count)[i], (B_i·v) = −H(sum)[i], Σ v = H(sum)[0].
  const int ncodes = 1 << q;
  walsh_hadamard(code_count_.data(), ncodes);
  walsh_hadamard(code_sum_.data(), ncodes);
  const double* hc = code_count_.data();
  const double* hs = code_sum_.data();
  const int m = q + (with_offset ? 1 : 0);
  std::array<double, kMaxUnknowns * kMaxUnknowns> a;
  std::array<double, kMaxUnknowns> b;
  std::array<double, kMaxUnknowns> x;
  const double dlen = prefix0_.back();  // Σ d (len unweighted): B_i·B_i and 1·1
  for (int i = 0; i < q; ++i) {
    a[static_cast<size_t>(i * m + i)] = dlen;
    for (int j = 0; j < i; ++j) {
      const double dot = hc[(1 << i) | (1 << j)];
      a[static_cast<size_t>(i * m + j)] = dot;
      a[static_cast<size_t>(j * m + i)] = dot;
    }
    b[static_cast<size_t>(i)] = -hs[1 << i];
    if (with_offset) {
      a[static_cast<size_t>(i * m + q)] = -hc[1 << i];
      a[static_cast<size_t>(q * m + i)] = -hc[1 << i];
    }
  }
  if (with_offset) {
    a[static_cast<size_t>(q * m + q)] = dlen;
    b[static_cast<size_t>(q)] = hs[0];
  }
  if (!solve_linear(a.data(), b.data(), m, x.data())) return false;
  for (int i = 0; i < q; ++i) alpha[i] = x[static_cast<size_t>(i)];
  *offset = with_offset ? x[static_cast<size_t>(q)] : 0.0;
  return true;
}

}  // namespace lutq::quant::detail
