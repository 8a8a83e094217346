// Importance-weighted fits (quantize.h): with skewed channel weights d the weighted fit's
// weighted error Σ d·(w − ŵ)² is at most the unweighted fit's; equal weights reproduce the
// unweighted fit exactly; per-IC groups are unaffected; GPTQ with a diagonal H is the weighted
// plain quantizer; bad importances are rejected.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "format/bcq_matrix.h"
#include "quant/gptq.h"
#include "quant/quantize.h"
#include "support/random_bcq.h"

namespace lutq::quant {
namespace {

using format::BcqConfig;
using format::BcqMatrix;
using format::Orientation;

// Gaussian weights, every fourth row Student-t (ν = 3).
std::vector<float> weights(int64_t n, int64_t k, std::mt19937_64& rng) {
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::student_t_distribution<float> t3(3.0f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) w[static_cast<size_t>(r * k + c)] = r % 4 == 0 ? t3(rng) : gauss(rng);
  }
  return w;
}

// Skewed channel weights: log-normal (σ = 2, a spread of ~e^8 across channels), a few channels
// 100x larger (activation outliers) and a few dead (0).
std::vector<double> skewed(int64_t k, std::mt19937_64& rng) {
  std::normal_distribution<double> gauss(0.0, 2.0);
  std::vector<double> d(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) {
    d[static_cast<size_t>(c)] = c % 97 == 5 ? 0.0 : std::exp(gauss(rng)) * (c % 61 == 3 ? 100.0 : 1.0);
  }
  return d;
}

BcqMatrix ok(Result<BcqMatrix> r) {
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  if (!r) return BcqMatrix{};
  EXPECT_TRUE(format::validate(*r).is_ok());
  return std::move(r).value();
}

// Σ_j d_j·(w − ŵ)² per scale set (per-OC).
std::vector<double> weighted_errors(const BcqMatrix& m, const std::vector<float>& w, const std::vector<double>& d) {
  const std::vector<float> back = format::dequantize(m);
  std::vector<double> err(static_cast<size_t>(m.num_scale_sets()), 0.0);
  for (int64_t r = 0; r < m.n; ++r) {
    for (int64_t c = 0; c < m.k; ++c) {
      const auto i = static_cast<size_t>(r * m.k + c);
      const double e = static_cast<double>(w[i]) - back[i];
      err[static_cast<size_t>(m.scale_set(r, c))] += d[static_cast<size_t>(c)] * e * e;
    }
  }
  return err;
}

struct Case {
  Method method;
  bool offset;
};
constexpr Case kCases[] = {{Method::kRtn, true}, {Method::kGreedy, false}, {Method::kGreedy, true},
                           {Method::kAlternating, false}, {Method::kAlternating, true}};

TEST(QuantImportance, WeightedErrorNotAboveUnweightedFits) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE("LUTQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t n = 32;
  const int64_t k = 512;
  const std::vector<float> w = weights(n, k, rng);
  const std::vector<double> d = skewed(k, rng);
  for (const Case& cs : kCases) {
    for (int64_t g : {32, 128}) {
      for (int q : {2, 3, 4}) {
        const QuantOptions opt{cs.method, BcqConfig{q, g, Orientation::kPerOC, cs.offset}, 10};
        SCOPED_TRACE(std::string(method_name(cs.method)) + (cs.offset ? "+offset" : "") + " q=" + std::to_string(q) +
                     " g=" + std::to_string(g));
        const std::vector<double> plain = weighted_errors(ok(quantize(w.data(), n, k, opt)), w, d);
        const std::vector<double> weighted = weighted_errors(ok(quantize(w.data(), n, k, opt, nullptr, d)), w, d);
        double sum_plain = 0.0;
        double sum_weighted = 0.0;
        double worst = 0.0;
        size_t worst_set = 0;
        for (size_t s = 0; s < plain.size(); ++s) {
          sum_plain += plain[s];
          sum_weighted += weighted[s];
          if (weighted[s] - plain[s] > worst) {
            worst = weighted[s] - plain[s];
            worst_set = s;
          }
        }
        // RTN and greedy keep the plain fit's candidates: never worse in any group. Alternating
        // is a local search under the weighted objective: lower in total.
        if (cs.method != Method::kAlternating) {
          EXPECT_LE(worst, 1e-9 * sum_plain) << "group " << worst_set << ": weighted " << weighted[worst_set]
                                             << " > plain " << plain[worst_set];
        }
        // Greedy mostly stores the range-covering grid (its planes clip), which has nothing to
        // weight: equal there. The others gain.
        if (cs.method != Method::kGreedy) {
          EXPECT_LT(sum_weighted, sum_plain) << "worst group " << worst_set << " (+" << worst << ")";
        }
      }
    }
  }
}

TEST(QuantImportance, EqualWeightsAndPerIcAreTheUnweightedFit) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE("LUTQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t n = 64;
  const int64_t k = 256;
  const std::vector<float> w = weights(n, k, rng);
  const std::vector<double> equal(static_cast<size_t>(k), 2.5);
  const std::vector<double> d = skewed(k, rng);
  for (const Case& cs : kCases) {
    for (int q : {1, 3, 4}) {
      SCOPED_TRACE(std::string(method_name(cs.method)) + (cs.offset ? "+offset" : "") + " q=" + std::to_string(q));
      const QuantOptions oc{cs.method, BcqConfig{q, 64, Orientation::kPerOC, cs.offset}, 10};
      testing::expect_same_bcq(ok(quantize(w.data(), n, k, oc, nullptr, equal)), ok(quantize(w.data(), n, k, oc)));
      // A per-IC group lies in one input channel: its weight is constant.
      const QuantOptions ic{cs.method, BcqConfig{q, 32, Orientation::kPerIC, cs.offset}, 10};
      testing::expect_same_bcq(ok(quantize(w.data(), n, k, ic, nullptr, d)), ok(quantize(w.data(), n, k, ic)));
    }
  }
}

TEST(QuantImportance, DiagonalHessianGptqIsTheWeightedQuantizer) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE("LUTQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t n = 32;
  const int64_t k = 256;
  const std::vector<float> w = weights(n, k, rng);
  std::vector<double> d = skewed(k, rng);
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) h[static_cast<size_t>(i * k + i)] = d[static_cast<size_t>(i)];
  for (Method method : {Method::kRtn, Method::kAlternating}) {
    for (bool act_order : {false, true}) {
      SCOPED_TRACE(std::string(method_name(method)) + (act_order ? " act_order" : ""));
      GptqOptions opt;
      opt.method = method;
      opt.cfg = BcqConfig{3, 64, Orientation::kPerOC, true};
      opt.act_order = act_order;
      opt.importance = true;
      const BcqMatrix a = ok(gptq(w.data(), n, k, h.data(), opt));
      const BcqMatrix b = ok(quantize(w.data(), n, k, QuantOptions{method, opt.cfg, 10}, nullptr, d));
      testing::expect_same_bcq(a, b);
      // With a diagonal H the calibrated error is the weighted error (dead columns weigh 0 in
      // both), so the weighted GPTQ fit is below the unweighted one.
      opt.importance = false;
      const BcqMatrix plain = ok(gptq(w.data(), n, k, h.data(), opt));
      EXPECT_LT(calibrated_error(w.data(), a, h.data()), calibrated_error(w.data(), plain, h.data()));
    }
  }
}

TEST(QuantImportance, RejectsBadImportance) {
  const int64_t n = 8;
  const int64_t k = 64;
  const std::vector<float> w(static_cast<size_t>(n * k), 0.5f);
  const QuantOptions opt{Method::kAlternating, BcqConfig{2, 32, Orientation::kPerOC, false}, 10};
  const std::vector<double> short_d(static_cast<size_t>(k - 1), 1.0);
  Result<BcqMatrix> r = quantize(w.data(), n, k, opt, nullptr, short_d);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("importance has 63 values"), std::string::npos) << r.status().message();
  for (double bad : {-1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    std::vector<double> d(static_cast<size_t>(k), 1.0);
    d[9] = bad;
    r = quantize(w.data(), n, k, opt, nullptr, d);
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("column 9"), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace lutq::quant
