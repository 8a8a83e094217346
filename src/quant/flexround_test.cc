// FlexRound (quant/flexround.h): the gradient of the STE surrogate against central finite
// differences; never worse than its RTN start on the calibrated loss (and better on random and
// heavy-tailed weights); the stored matrix is canonical RTN-form BCQ that format::dequantize
// reproduces; independence of the thread count; bad options refused.
#include "quant/flexround.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "quant/clip_search.h"
#include "quant/flexround_problem.h"
#include "quant/gptq.h"
#include "quant/quantize.h"
#include "support/quant_checks.h"
#include "support/random_bcq.h"

namespace lutq::quant {
namespace {

using detail::FlexParams;
using detail::FlexProblem;
using format::BcqConfig;
using format::BcqMatrix;

// Gaussian rows, or Student-t (ν = 3) rows when heavy.
std::vector<float> weights(int64_t n, int64_t k, bool heavy, std::mt19937_64& rng) {
  std::normal_distribution<float> gauss(0.0f, 0.05f);
  std::student_t_distribution<float> t3(3.0f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& x : w) x = heavy ? 0.05f * t3(rng) : gauss(rng);
  return w;
}

// A random SPD H = A Aᵀ/m + 0.1·I with correlated features of spread scales (A: k × m).
std::vector<double> random_spd(int64_t k, std::mt19937_64& rng) {
  const int64_t m = 2 * k;
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::vector<double> a(static_cast<size_t>(k * m));
  std::vector<double> common(static_cast<size_t>(m));
  for (double& x : common) x = gauss(rng);
  for (int64_t i = 0; i < k; ++i) {
    const double scale = std::pow(10.0, static_cast<double>(i % 5) / 4.0);
    for (int64_t t = 0; t < m; ++t) a[static_cast<size_t>(i * m + t)] = scale * (gauss(rng) + 0.7 * common[static_cast<size_t>(t)]);
  }
  std::vector<double> h(static_cast<size_t>(k * k));
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      double s = 0.0;
      for (int64_t t = 0; t < m; ++t) s += a[static_cast<size_t>(i * m + t)] * a[static_cast<size_t>(j * m + t)];
      h[static_cast<size_t>(i * k + j)] = s / static_cast<double>(m) + (i == j ? 0.1 : 0.0);
    }
  }
  return h;
}

using lutq::testing::ok;

BcqMatrix rtn(const std::vector<float>& w, int64_t n, int64_t k, const BcqConfig& cfg) {
  QuantOptions o;
  o.method = Method::kRtn;
  o.cfg = cfg;
  return ok(quantize(w.data(), n, k, o));
}

// The parameters of a trained-looking state: every kind moved off its start, and one weight
// pushed past the grid's end so the clamped branch is exercised.
FlexParams perturbed(const FlexProblem& problem, std::mt19937_64& rng) {
  FlexParams p = problem.initial();
  std::normal_distribution<double> gauss(0.0, 0.2);
  for (double& x : p.log_s1) x += 0.3 * gauss(rng);
  for (double& x : p.shift) x += gauss(rng);
  for (double& x : p.log_s2) x += gauss(rng);
  for (double& x : p.log_s3) x += gauss(rng);
  for (double& x : p.log_s4) x += gauss(rng);
  return p;
}

double& param(FlexParams& p, int which, size_t i) {
  switch (which) {
    case 0:
      return p.log_s1[i];
    case 1:
      return p.shift[i];
    case 2:
      return p.log_s2[i];
    case 3:
      return p.log_s3[i];
    default:
      return p.log_s4[i];
  }
}

TEST(FlexRound, GradientMatchesFiniteDifferencesOfTheSurrogate) {
  std::mt19937_64 rng(11);
  const int64_t n = 3, k = 64;
  const BcqConfig cfg{3, 32, format::Orientation::kPerOC, true};
  const std::vector<float> w = weights(n, k, true, rng);
  const std::vector<double> h = random_spd(k, rng);
  const BcqMatrix start = rtn(w, n, k, cfg);
  FlexProblem problem(w.data(), n, k, h.data(), start, /*stored_grid=*/false, /*double_product=*/true, nullptr);
  FlexParams p = perturbed(problem, rng);
  p.log_s2[0] = -2.0;  // element 0 far beyond the grid: clamped
  p.log_s2[5] = -2.0;
  const detail::FrozenRounding frozen = problem.freeze(p);
  int clamped = 0;
  for (int8_t s : frozen.side) clamped += s != 0;
  ASSERT_GT(clamped, 0);
  ASSERT_LT(clamped, n * k);
  FlexParams grad = FlexParams::zeros_like(p);
  FlexParams grad_real = FlexParams::zeros_like(p);
  const double loss = problem.evaluate(p, &grad, &frozen);
  // At the frozen point the surrogate is the real forward: same loss and gradient.
  EXPECT_NEAR(problem.evaluate(p, &grad_real), loss, 1e-12 * loss);
  const size_t sizes[5] = {p.log_s1.size(), p.shift.size(), p.log_s2.size(), p.log_s3.size(), p.log_s4.size()};
  constexpr double kStep = 1e-6;
  for (int which = 0; which < 5; ++which) {
    for (size_t i = 0; i < sizes[which]; ++i) {
      SCOPED_TRACE("parameter kind " + std::to_string(which) + " index " + std::to_string(i));
      EXPECT_NEAR(param(grad_real, which, i), param(grad, which, i), 1e-12 + 1e-9 * std::fabs(param(grad, which, i)));
      FlexParams up = p;
      FlexParams down = p;
      param(up, which, i) += kStep;
      param(down, which, i) -= kStep;
      const double fd =
          (problem.evaluate(up, nullptr, &frozen) - problem.evaluate(down, nullptr, &frozen)) / (2.0 * kStep);
      const double g = param(grad, which, i);
      EXPECT_NEAR(g, fd, 1e-7 + 1e-5 * std::fabs(fd)) << "analytic " << g << " vs central difference " << fd;
    }
  }
}

TEST(FlexRound, ForwardLossIsTheStoredMatrixLoss) {
  std::mt19937_64 rng(12);
  const int64_t n = 8, k = 64;
  const BcqConfig cfg{3, 32, format::Orientation::kPerOC, true};
  const std::vector<float> w = weights(n, k, false, rng);
  const std::vector<double> h = random_spd(k, rng);
  FlexProblem problem(w.data(), n, k, h.data(), rtn(w, n, k, cfg), /*stored_grid=*/true, /*double_product=*/true,
                      nullptr);
  const FlexParams p = perturbed(problem, rng);
  const BcqMatrix m = problem.to_matrix(p);
  ASSERT_TRUE(format::validate(m).is_ok());
  const BcqMatrix exact = ok(quantize(w.data(), n, k, QuantOptions{Method::kRtn, cfg, 10}));
  // Normaliser tr(W H Wᵀ): the calibrated error of an all-zero reconstruction.
  BcqMatrix zero = exact;
  std::fill(zero.alpha.begin(), zero.alpha.end(), uint16_t{0});
  std::fill(zero.offset.begin(), zero.offset.end(), uint16_t{0});
  const double norm = calibrated_error(w.data(), zero, h.data());
  EXPECT_NEAR(problem.evaluate(p, nullptr), calibrated_error(w.data(), m, h.data()) / norm, 1e-9);
}

struct Shape {
  int q;
  bool heavy;
};

TEST(FlexRound, NeverWorseThanRtnAndBetterOnRandomAndHeavyTailed) {
  const int64_t n = 32, k = 128;
  ThreadPool pool(2);
  for (const Shape s : {Shape{2, false}, Shape{3, false}, Shape{4, false}, Shape{2, true}, Shape{3, true}, Shape{4, true}}) {
    for (bool importance : {false, true}) {
      SCOPED_TRACE("q=" + std::to_string(s.q) + (s.heavy ? " heavy-tailed" : " gaussian") +
                   (importance ? " importance" : ""));
      std::mt19937_64 rng(100 + static_cast<uint64_t>(s.q) * 2 + (s.heavy ? 1 : 0));
      const std::vector<float> w = weights(n, k, s.heavy, rng);
      const std::vector<double> h = random_spd(k, rng);
      FlexRoundOptions opt;
      opt.cfg = BcqConfig{s.q, 32, format::Orientation::kPerOC, true};
      opt.importance = importance;
      FlexRoundReport rep;
      const BcqMatrix m = ok(flexround(w.data(), n, k, h.data(), opt, &pool, &rep));
      std::vector<double> d;
      if (importance) {
        for (int64_t i = 0; i < k; ++i) d.push_back(h[static_cast<size_t>(i * k + i)]);
      }
      const BcqMatrix start = ok(quantize(w.data(), n, k, QuantOptions{Method::kRtn, opt.cfg, 10}, &pool, d));
      const double e_rtn = calibrated_error(w.data(), start, h.data());
      const double e_flex = calibrated_error(w.data(), m, h.data());
      EXPECT_DOUBLE_EQ(rep.rtn_error, e_rtn);
      EXPECT_DOUBLE_EQ(rep.flex_error, e_flex);
      EXPECT_TRUE(rep.kept_flexround);
      // Row by row no worse than the start, and clearly better overall.
      const std::vector<double> rows_rtn = row_calibrated_errors(w.data(), start, h.data(), {});
      const std::vector<double> rows_flex = row_calibrated_errors(w.data(), m, h.data(), {});
      for (int64_t r = 0; r < n; ++r) EXPECT_LE(rows_flex[static_cast<size_t>(r)], rows_rtn[static_cast<size_t>(r)]);
      // The importance-weighted start has already searched narrower grids: less left to gain.
      EXPECT_LT(e_flex, (importance ? 0.95 : 0.9) * e_rtn) << "flexround " << e_flex << " vs rtn " << e_rtn;
    }
  }
}

TEST(FlexRound, OutputIsCanonicalUniformBcq) {
  std::mt19937_64 rng(13);
  const int64_t n = 16, k = 128;
  const std::vector<float> w = weights(n, k, true, rng);
  const std::vector<double> h = random_spd(k, rng);
  FlexRoundOptions opt;
  opt.cfg = BcqConfig{3, 64, format::Orientation::kPerOC, false};  // the offset is forced on
  opt.iterations = 30;
  const BcqMatrix m = ok(flexround(w.data(), n, k, h.data(), opt));
  ASSERT_TRUE(m.cfg.has_offset);
  const std::vector<float> back = format::dequantize(m);
  const int levels = (1 << m.cfg.q) - 1;
  for (int64_t set = 0; set < m.num_scale_sets(); ++set) {
    const double a0 = fp16_to_fp32(m.alpha[static_cast<size_t>(set * m.cfg.q)]);
    ASSERT_GT(a0, 0.0);
    for (int i = 1; i < m.cfg.q; ++i) {
      EXPECT_EQ(fp16_to_fp32(m.alpha[static_cast<size_t>(set * m.cfg.q + i)]), std::ldexp(a0, i));
    }
    const double z = fp16_to_fp32(m.offset[static_cast<size_t>(set)]);
    const int64_t r = set / (k / m.cfg.g);
    const int64_t c0 = (set % (k / m.cfg.g)) * m.cfg.g;
    for (int64_t c = c0; c < c0 + m.cfg.g; ++c) {
      // Every value is a grid point z + 2·a0·(code − levels/2) with code in 0..levels.
      const double code = (back[static_cast<size_t>(r * k + c)] - z) / (2.0 * a0) + 0.5 * levels;
      EXPECT_NEAR(code, std::round(code), 1e-3);
      EXPECT_GE(std::round(code), 0.0);
      EXPECT_LE(std::round(code), levels);
    }
  }
}

TEST(FlexRound, IndependentOfThreadCount) {
  std::mt19937_64 rng(14);
  const int64_t n = 40, k = 128;
  const std::vector<float> w = weights(n, k, true, rng);
  const std::vector<double> h = random_spd(k, rng);
  FlexRoundOptions opt;
  opt.cfg = BcqConfig{3, 32, format::Orientation::kPerOC, true};
  opt.iterations = 40;
  const BcqMatrix one = ok(flexround(w.data(), n, k, h.data(), opt));
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    lutq::testing::expect_same_bcq(ok(flexround(w.data(), n, k, h.data(), opt, &pool)), one);
  }
}

TEST(FlexRound, ZeroIterationsIsTheRtnStart) {
  std::mt19937_64 rng(15);
  const int64_t n = 8, k = 64;
  const std::vector<float> w = weights(n, k, false, rng);
  const std::vector<double> h = random_spd(k, rng);
  FlexRoundOptions opt;
  opt.cfg = BcqConfig{4, 32, format::Orientation::kPerOC, true};
  opt.iterations = 0;
  lutq::testing::expect_same_bcq(ok(flexround(w.data(), n, k, h.data(), opt)), rtn(w, n, k, opt.cfg));
}

TEST(FlexRound, RejectsBadOptions) {
  std::mt19937_64 rng(16);
  const int64_t n = 8, k = 64;
  const std::vector<float> w = weights(n, k, false, rng);
  const std::vector<double> h = random_spd(k, rng);
  const auto fails = [&](const FlexRoundOptions& o, const double* hp, const std::string& needle) {
    Result<BcqMatrix> r = flexround(w.data(), n, k, hp, o);
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  };
  FlexRoundOptions good;
  good.cfg = BcqConfig{3, 32, format::Orientation::kPerOC, true};
  fails(good, nullptr, "calibration");
  FlexRoundOptions o = good;
  o.cfg.orientation = format::Orientation::kPerIC;
  fails(o, h.data(), "per-OC");
  o = good;
  o.iterations = -1;
  fails(o, h.data(), "iterations");
  o = good;
  o.lr_scale = 0.0;
  fails(o, h.data(), "learning rate");
  o = good;
  o.cfg.g = 48;
  fails(o, h.data(), "flexround");
  std::vector<float> bad = w;
  bad[3] = std::nanf("");
  Result<BcqMatrix> r = flexround(bad.data(), n, k, h.data(), good);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("NaN"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace lutq::quant
