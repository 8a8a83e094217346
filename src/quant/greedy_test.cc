// Greedy BCQ on heavy-tailed rows: never worse than the range-covering uniform grid (RTN), never
// clipping a group's extreme weight, and falling with q.
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

// One group's fit: its squared error in double, from the stored (fp16) form, and how far its
// grid reaches against the weight farthest from the stored offset (the one a clipping fit loses).
struct GroupFit {
  double err = 0.0;
  double reach = 0.0;     // Σ|α_i|: the grid spans offset ± reach
  double smallest = 0.0;  // min |α_i|
  double far = 0.0;       // max |v − offset|
};
GroupFit group_fit(const float* v, int64_t len, int q, Method method, bool offset) {
  float alpha[format::kMaxBits];
  float z = 0.0f;
  std::vector<uint8_t> signs(static_cast<size_t>(q * len));
  fit_group(v, len, q, method, offset, 10, alpha, &z, signs.data());
  GroupFit f;
  f.smallest = std::fabs(alpha[0]);
  for (int i = 0; i < q; ++i) {
    f.reach += std::fabs(alpha[i]);
    f.smallest = std::min(f.smallest, static_cast<double>(std::fabs(alpha[i])));
  }
  for (int64_t j = 0; j < len; ++j) {
    double x = z;
    for (int i = 0; i < q; ++i) x += signs[static_cast<size_t>(i * len + j)] ? alpha[i] : -alpha[i];
    f.err += (v[j] - x) * (v[j] - x);
    f.far = std::max(f.far, std::fabs(v[j] - static_cast<double>(z)));
  }
  return f;
}

TEST(QuantGreedy, HeavyTailsNoClippingAndNeverWorseThanUniform) {
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
        double worst_ratio = 0.0;  // greedy error / RTN grid error
        double worst_clip = 0.0;   // farthest weight beyond the grid's end, in smallest steps
        int64_t worst_set = -1;
        int64_t worst_clip_set = -1;
        for (int64_t set = 0; set < n * k / g; ++set) {
          const float* v = w.data() + set * g;
          const GroupFit greedy = group_fit(v, g, q, Method::kGreedy, offset);
          const double uniform = group_fit(v, g, q, Method::kRtn, offset).err;
          total += greedy.err;
          if (greedy.err / uniform > worst_ratio) {
            worst_ratio = greedy.err / uniform;
            worst_set = set;
          }
          const double clip = (greedy.far - greedy.reach) / greedy.smallest;
          if (clip > worst_clip) {
            worst_clip = clip;
            worst_clip_set = set;
          }
        }
        // The RTN grid is one of the fitter's candidates: only rounding in the sums separates them.
        EXPECT_LE(worst_ratio, 1.0 + 1e-9) << "worst group " << worst_set << " (row " << worst_set * g / k
                                            << "): greedy error / RTN grid error = " << worst_ratio;
        // No clipping: the grid reaches the weight farthest from its offset, up to one smallest
        // step (what the stored fit allows; the RTN grid reaches it fully).
        EXPECT_LE(worst_clip, 1.0) << "worst group " << worst_clip_set << " (row " << worst_clip_set * g / k
                                   << "): the farthest weight lies " << worst_clip << " smallest steps beyond the grid";
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
