// GPTQ and AdaDim: calibrated error below the uncalibrated quantizers on correlated inputs,
// exact reduction to them when H is diagonal, the damping retry, dead columns, bad input.
#include "quant/gptq.h"

#include <gtest/gtest.h>

#include "support/quant_checks.h"
#include "support/random_bcq.h"

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "quant/hessian.h"

namespace lutq::quant {
namespace {

using format::BcqConfig;
using format::BcqMatrix;
using format::Orientation;

std::vector<float> gaussian(int64_t n, int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& x : w) x = dist(rng);
  return w;
}

// Rows x = z + 2·(F s) with a few shared factors (strongly correlated features) and per-feature
// scales spread over 10x, like LLM activations.
std::vector<float> correlated_rows(int64_t m, int64_t k, std::mt19937& rng) {
  constexpr int64_t kFactors = 6;
  const std::vector<float> mix = gaussian(kFactors, k, rng);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> scale(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) scale[static_cast<size_t>(c)] = std::pow(10.0f, static_cast<float>(c % 7) / 6.0f);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (int64_t t = 0; t < m; ++t) {
    float s[kFactors];
    for (float& v : s) v = dist(rng);
    for (int64_t c = 0; c < k; ++c) {
      float v = dist(rng);
      for (int64_t f = 0; f < kFactors; ++f) v += 2.0f * s[f] * mix[static_cast<size_t>(f * k + c)];
      x[static_cast<size_t>(t * k + c)] = v * scale[static_cast<size_t>(c)];
    }
  }
  return x;
}

using lutq::testing::hessian_of;

using lutq::testing::ok;

struct Problem {
  int64_t n = 64, k = 256, m = 1024;
  std::vector<float> w, x;
  std::vector<double> h;
};

Problem make_problem(uint32_t seed, int64_t n = 64, int64_t k = 256, int64_t m = 1024) {
  std::mt19937 rng(seed);
  Problem p;
  p.n = n;
  p.k = k;
  p.m = m;
  p.w = gaussian(n, k, rng);
  p.x = correlated_rows(m, k, rng);
  p.h = hessian_of(p.x, m, k);
  return p;
}

TEST(Gptq, CalibratedErrorIsTheOutputError) {
  const Problem p = make_problem(1, 16, 64, 200);
  const BcqMatrix q = ok(quantize(p.w.data(), p.n, p.k, QuantOptions{Method::kRtn, BcqConfig{3, 32}, 10}));
  const std::vector<float> d = format::dequantize(q);
  double direct = 0.0;
  for (int64_t t = 0; t < p.m; ++t) {
    for (int64_t r = 0; r < p.n; ++r) {
      double s = 0.0;
      for (int64_t c = 0; c < p.k; ++c) {
        s += (static_cast<double>(p.w[static_cast<size_t>(r * p.k + c)]) - d[static_cast<size_t>(r * p.k + c)]) *
             p.x[static_cast<size_t>(t * p.k + c)];
      }
      direct += s * s;
    }
  }
  // Both are sums of the same products in double; H's fp32 tiles add ~1.5e-5 relative.
  EXPECT_NEAR(calibrated_error(p.w.data(), q, p.h.data()), direct, 1e-4 * direct);
}

struct Case {
  Method method;
  Orientation orientation;
  int64_t g;
  bool act_order;
};

TEST(Gptq, BeatsUncalibratedQuantizers) {
  const Problem p = make_problem(2);
  ThreadPool pool(2);
  const Case cases[] = {
      {Method::kRtn, Orientation::kPerOC, 64, false},         {Method::kRtn, Orientation::kPerOC, 64, true},
      {Method::kRtn, Orientation::kPerOC, 256, true},         {Method::kAlternating, Orientation::kPerOC, 64, false},
      {Method::kAlternating, Orientation::kPerOC, 128, true}, {Method::kRtn, Orientation::kPerIC, 32, false},
      {Method::kAlternating, Orientation::kPerIC, 32, true},  {Method::kGreedy, Orientation::kPerOC, 32, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(method_name(c.method)) + " " + format::orientation_name(c.orientation) +
                 " g=" + std::to_string(c.g) + (c.act_order ? " act_order" : ""));
    GptqOptions opt;
    opt.method = c.method;
    opt.cfg = BcqConfig{3, c.g, c.orientation, c.method != Method::kAlternating};
    opt.act_order = c.act_order;
    const BcqMatrix gq = ok(gptq(p.w.data(), p.n, p.k, p.h.data(), opt, &pool));
    const BcqMatrix base = ok(quantize(p.w.data(), p.n, p.k, QuantOptions{c.method, opt.cfg, 10}, &pool));
    const double e_gptq = calibrated_error(p.w.data(), gq, p.h.data(), &pool);
    const double e_base = calibrated_error(p.w.data(), base, p.h.data(), &pool);
    EXPECT_LT(e_gptq, 0.8 * e_base) << "gptq " << e_gptq << " vs " << method_name(c.method) << " " << e_base;
  }
}

TEST(Gptq, IdentityHessianReducesToPlainQuantizer) {
  std::mt19937 rng(3);
  const int64_t n = 64, k = 128;
  const std::vector<float> w = gaussian(n, k, rng);
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) h[static_cast<size_t>(i * k + i)] = 1.0 + static_cast<double>(i % 5);
  for (Method method : {Method::kRtn, Method::kAlternating}) {
    for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
      for (bool act_order : {false, true}) {
        SCOPED_TRACE(std::string(method_name(method)) + " " + format::orientation_name(o) + (act_order ? " act" : ""));
        GptqOptions opt;
        opt.method = method;
        opt.cfg = BcqConfig{3, 32, o, true};
        opt.act_order = act_order;
        const BcqMatrix a = ok(gptq(w.data(), n, k, h.data(), opt));
        const BcqMatrix b = ok(quantize(w.data(), n, k, QuantOptions{method, opt.cfg, 10}));
        testing::expect_same_bcq(a, b);
      }
    }
  }
}

TEST(Gptq, FactorIsTheUpperCholeskyOfTheDampedInverse) {
  // UᵀU (P(H + λI)Pᵀ) = I, U upper with a positive diagonal, for both column orders; k spans
  // LAPACK's block size so the blocked factorisation is exercised. The bound: the residual of
  // a backward-stable Cholesky + triangular inverse grows like k·ε·cond(A); cond here < 1e4.
  for (bool act_order : {false, true}) {
    std::mt19937 rng(11);
    const int64_t k = 150, m = 400;
    const std::vector<double> h = hessian_of(correlated_rows(m, k, rng), m, k);
    GptqOptions opt;
    opt.act_order = act_order;
    Result<GptqFactor> made = prepare_gptq(h.data(), k, opt);
    ASSERT_TRUE(made.is_ok()) << made.status().message();
    const GptqFactor& f = *made;
    double worst = 0.0;
    int64_t wi = 0, wj = 0;
    for (int64_t i = 0; i < k; ++i) {
      ASSERT_GT(f.u[static_cast<size_t>(i * k + i)], 0.0);
      for (int64_t j = 0; j < i; ++j) ASSERT_EQ(f.u[static_cast<size_t>(i * k + j)], 0.0) << i << "," << j;
    }
    for (int64_t i = 0; i < k; ++i) {  // row i of (UᵀU) A
      std::vector<double> row(static_cast<size_t>(k), 0.0);  // (UᵀU)[i][:]
      for (int64_t l = 0; l <= i; ++l) {
        for (int64_t j = l; j < k; ++j) row[static_cast<size_t>(j)] += f.u[static_cast<size_t>(l * k + i)] * f.u[static_cast<size_t>(l * k + j)];
      }
      for (int64_t j = 0; j < k; ++j) {
        double s = 0.0;
        const int64_t pj = f.perm[static_cast<size_t>(j)];
        for (int64_t l = 0; l < k; ++l) {
          const int64_t pl = f.perm[static_cast<size_t>(l)];
          s += row[static_cast<size_t>(l)] * (h[static_cast<size_t>(pl * k + pj)] + (pl == pj ? f.damp : 0.0));
        }
        const double err = std::fabs(s - (i == j ? 1.0 : 0.0));
        if (err > worst) worst = err, wi = i, wj = j;
      }
    }
    EXPECT_LT(worst, 1e-9) << "worst element (" << wi << ", " << wj << "), act_order " << act_order;
  }
}

TEST(Gptq, FactorCacheSharesOneInputsFactor) {
  std::mt19937 rng(12);
  const int64_t n = 16, k = 64, m = 200;
  const std::vector<double> h = hessian_of(correlated_rows(m, k, rng), m, k);
  const std::vector<double> h2 = hessian_of(correlated_rows(m, k, rng), m, k);
  const std::vector<float> w = gaussian(n, k, rng);
  GptqOptions opt;
  opt.cfg = BcqConfig{3, 32, Orientation::kPerOC, true};
  GptqFactorCache cache;
  Result<const GptqFactor*> a = cache.get(7, h.data(), k, opt);
  ASSERT_TRUE(a.is_ok());
  Result<const GptqFactor*> b = cache.get(7, h.data(), k, opt);
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(cache.prepared(), 1);
  EXPECT_EQ(cache.reused(), 1);
  // The cached factor quantizes exactly as a fresh one.
  const BcqMatrix fresh = ok(gptq(w.data(), n, k, h.data(), opt));
  const BcqMatrix cached = ok(gptq_quantize(w.data(), n, k, **b, opt));
  EXPECT_EQ(format::dequantize(fresh), format::dequantize(cached));
  // Another key (the same storage holding another block's Hessian), other data, other options:
  // prepared again.
  ASSERT_TRUE(cache.get(8, h.data(), k, opt).is_ok());
  ASSERT_TRUE(cache.get(8, h2.data(), k, opt).is_ok());
  opt.percdamp = 0.05;
  ASSERT_TRUE(cache.get(8, h2.data(), k, opt).is_ok());
  EXPECT_EQ(cache.prepared(), 4);
}

TEST(Gptq, RaisesDampingWhenCholeskyFails) {
  // Fewer rows than features and a duplicated feature: H is singular; with percdamp = 0 the
  // first factorisation fails and the damping is raised until it succeeds.
  std::mt19937 rng(4);
  const int64_t n = 16, k = 64, m = 20;
  std::vector<float> x = correlated_rows(m, k, rng);
  for (int64_t t = 0; t < m; ++t) x[static_cast<size_t>(t * k + 5)] = x[static_cast<size_t>(t * k + 9)];
  const std::vector<double> h = hessian_of(x, m, k);
  const std::vector<float> w = gaussian(n, k, rng);
  GptqOptions opt;
  opt.cfg = BcqConfig{3, 32, Orientation::kPerOC, true};
  opt.percdamp = 0.0;
  Result<GptqFactor> f = prepare_gptq(h.data(), k, opt);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_GT(f->damp_retries, 0);
  EXPECT_GT(f->damp, 0.0);
  for (double v : f->u) ASSERT_TRUE(std::isfinite(v));
  const BcqMatrix q = ok(gptq_quantize(w.data(), n, k, *f, opt));
  for (float v : format::dequantize(q)) ASSERT_TRUE(std::isfinite(v));
  // No retries allowed: a clear error instead.
  opt.max_damp_retries = 0;
  Result<GptqFactor> none = prepare_gptq(h.data(), k, opt);
  ASSERT_FALSE(none.is_ok());
  EXPECT_NE(none.status().message().find("not positive definite"), std::string::npos);
}

TEST(Gptq, DeadColumns) {
  Problem p = make_problem(5, 32, 128, 512);
  for (int64_t t = 0; t < p.m; ++t) {
    for (int64_t c : {0, 17, 64, 127}) p.x[static_cast<size_t>(t * p.k + c)] = 0.0f;
  }
  p.h = hessian_of(p.x, p.m, p.k);
  for (bool act_order : {false, true}) {
    GptqOptions opt;
    opt.cfg = BcqConfig{3, 64, Orientation::kPerOC, true};
    opt.act_order = act_order;
    Result<GptqFactor> f = prepare_gptq(p.h.data(), p.k, opt);
    ASSERT_TRUE(f.is_ok()) << f.status().message();
    EXPECT_EQ(f->dead_columns, 4);
    const BcqMatrix q = ok(gptq_quantize(p.w.data(), p.n, p.k, *f, opt));
    const std::vector<float> d = format::dequantize(q);
    for (float v : d) ASSERT_TRUE(std::isfinite(v));
    // A dead column's weights are kept (rounded to their group's grid), not zeroed.
    double dead_err = 0.0;
    for (int64_t r = 0; r < p.n; ++r) {
      const double e = d[static_cast<size_t>(r * p.k + 17)] - p.w[static_cast<size_t>(r * p.k + 17)];
      dead_err += e * e;
    }
    double w2 = 0.0;
    for (int64_t r = 0; r < p.n; ++r) w2 += p.w[static_cast<size_t>(r * p.k + 17)] * p.w[static_cast<size_t>(r * p.k + 17)];
    EXPECT_LT(dead_err, 0.5 * w2);
    const BcqMatrix base = ok(quantize(p.w.data(), p.n, p.k, QuantOptions{Method::kRtn, opt.cfg, 10}));
    EXPECT_LT(calibrated_error(p.w.data(), q, p.h.data()), calibrated_error(p.w.data(), base, p.h.data()));
  }
}

TEST(Gptq, RejectsBadInput) {
  const Problem p = make_problem(6, 8, 64, 100);
  GptqOptions opt;
  opt.cfg = BcqConfig{3, 32, Orientation::kPerOC, true};
  EXPECT_FALSE(gptq(p.w.data(), p.n, p.k, nullptr, opt).is_ok());
  EXPECT_FALSE(gptq(nullptr, p.n, p.k, p.h.data(), opt).is_ok());
  Result<GptqFactor> f = prepare_gptq(p.h.data(), p.k, opt);
  ASSERT_TRUE(f.is_ok());
  EXPECT_FALSE(gptq_quantize(p.w.data(), p.n * 2, p.k / 2, *f, opt).is_ok());  // factor for another k
  GptqOptions bad_g = opt;
  bad_g.cfg.g = 48;
  EXPECT_FALSE(gptq_quantize(p.w.data(), p.n, p.k, *f, bad_g).is_ok());
  GptqOptions act = opt;
  act.act_order = true;
  EXPECT_FALSE(gptq_quantize(p.w.data(), p.n, p.k, *f, act).is_ok());  // factor without act_order
  GptqOptions damp = opt;
  damp.percdamp = -1.0;
  EXPECT_FALSE(prepare_gptq(p.h.data(), p.k, damp).is_ok());
  std::vector<float> w = p.w;
  w[13] = std::numeric_limits<float>::infinity();
  const Result<BcqMatrix> inf = gptq_quantize(w.data(), p.n, p.k, *f, opt);
  ASSERT_FALSE(inf.is_ok());
  EXPECT_NE(inf.status().message().find("row 0, column 13"), std::string::npos) << inf.status().message();
  std::vector<double> h = p.h;
  h[0] = -1.0;
  EXPECT_FALSE(prepare_gptq(h.data(), p.k, opt).is_ok());
  h[0] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(prepare_gptq(h.data(), p.k, opt).is_ok());
}

TEST(AdaDim, ChoosesTheLowerCalibratedError) {
  // Inputs with a few large-magnitude features: per-IC groups isolate them.
  Problem p = make_problem(7, 64, 128, 512);
  for (bool use_gptq : {false, true}) {
    SCOPED_TRACE(use_gptq ? "gptq" : "rtn");
    OrientationOptions opt;
    opt.use_gptq = use_gptq;
    opt.gptq.cfg = BcqConfig{3, 32, Orientation::kPerOC, true};
    Result<OrientationChoice> c = choose_orientation(p.w.data(), p.n, p.k, p.h.data(), opt);
    ASSERT_TRUE(c.is_ok()) << c.status().message();
    EXPECT_TRUE(format::validate(c->matrix).is_ok());
    EXPECT_EQ(c->matrix.cfg.orientation, c->chosen);
    const double chosen = calibrated_error(p.w.data(), c->matrix, p.h.data());
    EXPECT_EQ(chosen, std::min(c->error_per_oc, c->error_per_ic));
    // Each reported error is that of the fixed orientation quantized alone.
    for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
      GptqOptions g = opt.gptq;
      g.cfg.orientation = o;
      const BcqMatrix fixed = use_gptq ? ok(gptq(p.w.data(), p.n, p.k, p.h.data(), g))
                                       : ok(quantize(p.w.data(), p.n, p.k, QuantOptions{g.method, g.cfg, 10}));
      EXPECT_EQ(calibrated_error(p.w.data(), fixed, p.h.data()),
                o == Orientation::kPerOC ? c->error_per_oc : c->error_per_ic);
    }
  }
  // A per-IC group that does not divide n is skipped, not an error.
  OrientationOptions opt;
  opt.gptq.cfg = BcqConfig{3, 32, Orientation::kPerOC, true};
  opt.g_per_ic = 256;
  Result<OrientationChoice> c = choose_orientation(p.w.data(), p.n, p.k, p.h.data(), opt);
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->chosen, Orientation::kPerOC);
  EXPECT_TRUE(std::isinf(c->error_per_ic));
}

}  // namespace
}  // namespace lutq::quant
