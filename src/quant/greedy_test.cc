// Greedy BCQ on heavy-tailed rows: never worse than the range-covering uniform grid (RTN) nor
// than the best 1-plane fit, within the uniform grid's derived error bound, and falling with q.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "format/bcq_matrix.h"
#include "quant/quantize.h"
#include "support/random_bcq.h"

namespace lutq::quant {
namespace {

// Rows of Student-t (ν = 2), Gaussian rows with three ±50σ outliers each, and plain Gaussian rows.
std::vector<float> heavy_rows(int64_t n, int64_t k, std::mt19937_64& rng) {
  std::student_t_distribution<float> t2(2.0f);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::uniform_int_distribution<int64_t> col(0, k - 1);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r) {
    float* row = w.data() + r * k;
    for (int64_t c = 0; c < k; ++c) row[c] = r % 3 == 0 ? t2(rng) : gauss(rng);
    if (r % 3 == 1) {
      for (int o = 0; o < 3; ++o) row[col(rng)] = (o % 2 == 0 ? 50.0f : -50.0f);
    }
  }
  return w;
}

// One group's fit and its squared error in double, from the stored (fp16) form.
double group_error(const float* v, int64_t len, int q, Method method, bool offset) {
  float alpha[format::kMaxBits];
  float z = 0.0f;
  std::vector<uint8_t> signs(static_cast<size_t>(q * len));
  fit_group(v, len, q, method, offset, 10, alpha, &z, signs.data());
  double err = 0.0;
  for (int64_t j = 0; j < len; ++j) {
    double x = z;
    for (int i = 0; i < q; ++i) x += signs[static_cast<size_t>(i * len + j)] ? alpha[i] : -alpha[i];
    err += (v[j] - x) * (v[j] - x);
  }
  return err;
}

// The best 1-plane fit given the offset (z = fp16 mean with an offset, else 0): α = mean|v − z|,
// each weight at z ± α by the sign of v − z, computed here independently of the fitter (α is
// kept in double; fp16 rounding moves the error by a relative ~2^-22).
double one_plane_error(const float* v, int64_t len, bool offset) {
  double mean = 0.0;
  for (int64_t j = 0; j < len; ++j) mean += v[j];
  const double z = offset ? round_to_fp16(static_cast<float>(mean / static_cast<double>(len))) : 0.0;
  double abs_sum = 0.0;
  double sq_sum = 0.0;
  for (int64_t j = 0; j < len; ++j) {
    abs_sum += std::fabs(v[j] - z);
    sq_sum += (v[j] - z) * (v[j] - z);
  }
  const double a = abs_sum / static_cast<double>(len);
  return sq_sum - static_cast<double>(len) * a * a;  // Σ (|r| − a)² = Σ r² − len·a²
}

// The uniform grid's bound: every weight lies within [z − half, z + half] of a grid whose half
// step α_0 is the smallest fp16 value >= half/(2^q − 1), so each error is at most α_0, and α_0
// exceeds half/(2^q − 1) by at most one fp16 ulp (relative 2^-10) or the smallest subnormal.
double uniform_bound(const float* v, int64_t len, int q, bool offset) {
  const auto [lo_it, hi_it] = std::minmax_element(v, v + len);
  const double lo = *lo_it;
  const double hi = *hi_it;
  const double z = offset ? round_to_fp16(static_cast<float>(0.5 * (lo + hi))) : 0.0;
  const double half = std::max(hi - z, z - lo);
  const double a0 = half / ((1 << q) - 1) * (1.0 + 0x1p-10) + 0x1p-24;
  return static_cast<double>(len) * a0 * a0;
}

TEST(QuantGreedy, HeavyTailsNeverWorseThanUniformOrOnePlane) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE("LUTQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t n = 48;
  const int64_t k = 512;
  const std::vector<float> w = heavy_rows(n, k, rng);
  for (int64_t g : {64, 128}) {
    for (bool offset : {false, true}) {
      double prev_total = std::numeric_limits<double>::infinity();
      for (int q = 1; q <= 6; ++q) {
        SCOPED_TRACE("g=" + std::to_string(g) + " q=" + std::to_string(q) + (offset ? " offset" : ""));
        double total = 0.0;
        double worst_ratio = 0.0;  // greedy error over the lowest of the three baselines
        int64_t worst_set = -1;
        std::string worst_note;
        for (int64_t set = 0; set < n * k / g; ++set) {
          const float* v = w.data() + set * g;
          const double greedy = group_error(v, g, q, Method::kGreedy, offset);
          const double uniform = group_error(v, g, q, Method::kRtn, offset);
          const double one_plane = one_plane_error(v, g, offset);
          const double bound = uniform_bound(v, g, q, offset);
          const double floor = std::min({uniform, one_plane, bound});
          total += greedy;
          if (greedy / floor > worst_ratio) {
            worst_ratio = greedy / floor;
            worst_set = set;
            worst_note = "greedy " + std::to_string(greedy) + ", RTN grid " + std::to_string(uniform) + ", 1-plane " +
                         std::to_string(one_plane) + ", bound " + std::to_string(bound);
          }
        }
        // The RTN grid is one of the fitter's candidates and the greedy planes extend the 1-plane
        // fit, so only rounding (fp16 scales: relative ~2^-10 in the error) separates them.
        EXPECT_LE(worst_ratio, 1.0 + 1e-3) << "worst group " << worst_set << " (row " << worst_set * g / k
                                            << "): greedy error / min(RTN grid, 1-plane fit, bound) = " << worst_ratio
                                            << " (" << worst_note << ")";
        // The candidates are not nested across q (the 2^q-level uniform grid does not contain the
        // 2^(q−1)-level one), so a single group may gain slightly; the total falls.
        EXPECT_LT(total, prev_total) << "total squared error did not fall from q=" << q - 1;
        prev_total = total;
      }
    }
  }
}

}  // namespace
}  // namespace lutq::quant
