// Ternary RTN against a brute force over every ternary assignment of small rows, and
// GPTQ-ternary against RTN on the calibrated error of a random Hessian.
#include "quant/ternary.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "core/thread_pool.h"

namespace lutq::quant {
namespace {

// min over t ∈ {−1,0,1}^k with at most max_nz nonzeros and over s of Σ(w − s·t)²; s = the
// least-squares optimum for each support.
double brute_force_error(const std::vector<float>& w, int64_t max_nz) {
  const auto k = static_cast<int64_t>(w.size());
  int64_t combos = 1;
  for (int64_t i = 0; i < k; ++i) combos *= 3;
  double best = 1e300;
  for (int64_t code = 0; code < combos; ++code) {
    std::vector<int> t(static_cast<size_t>(k));
    int64_t x = code;
    int64_t nz = 0;
    for (int64_t i = 0; i < k; ++i) {
      t[static_cast<size_t>(i)] = static_cast<int>(x % 3) - 1;
      nz += t[static_cast<size_t>(i)] != 0;
      x /= 3;
    }
    if (nz > max_nz) continue;
    double num = 0.0;
    for (int64_t i = 0; i < k; ++i) num += w[static_cast<size_t>(i)] * t[static_cast<size_t>(i)];
    const double s = nz > 0 ? num / static_cast<double>(nz) : 0.0;
    double err = 0.0;
    for (int64_t i = 0; i < k; ++i) {
      const double d = w[static_cast<size_t>(i)] - s * t[static_cast<size_t>(i)];
      err += d * d;
    }
    best = std::min(best, err);
  }
  return best;
}

double row_error(const std::vector<float>& w, const format::TernaryMatrix& q) {
  const double s = fp16_to_fp32(q.scale[0]);
  double err = 0.0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double d = w[i] - s * q.t[i];
    err += d * d;
  }
  return err;
}

TEST(TernaryRtn, MseFitIsTheBruteForceOptimum) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t k = 1 + trial % 8;
    std::vector<float> w(static_cast<size_t>(k));
    for (float& v : w) v = nd(rng) * (trial % 3 == 0 ? 0.01f : 1.0f);
    for (double zf : {0.0, 0.5}) {
      TernaryOptions opt;
      opt.min_zero_fraction = zf;
      Result<format::TernaryMatrix> q = ternary_rtn(w.data(), 1, k, opt);
      ASSERT_TRUE(q) << q.status().message();
      const auto max_nz = static_cast<int64_t>(std::floor((1.0 - zf) * static_cast<double>(k) + 1e-9));
      const double best = brute_force_error(w, max_nz);
      // The fp16 rounding of s costs at most a relative 2^-11 of s on each nonzero.
      double sq = 0.0;
      for (float v : w) sq += static_cast<double>(v) * v;
      EXPECT_LE(row_error(w, *q), best + 1e-5 * sq + 1e-12) << "trial " << trial << " k " << k << " zf " << zf;
      int64_t nz = 0;
      for (int8_t t : q->t) nz += t != 0;
      EXPECT_LE(nz, max_nz);
    }
  }
}

TEST(TernaryRtn, MaxAbsGridRoundsToNearest) {
  const std::vector<float> w = {1.0f, -0.49f, 0.51f, -1.0f, 0.0f, 0.2f};
  TernaryOptions opt;
  opt.scale = TernaryScale::kMaxAbs;
  Result<format::TernaryMatrix> q = ternary_rtn(w.data(), 1, 6, opt);
  ASSERT_TRUE(q);
  EXPECT_EQ(fp16_to_fp32(q->scale[0]), 1.0f);
  EXPECT_EQ(q->t, (std::vector<int8_t>{1, 0, 1, -1, 0, 0}));
}

TEST(TernaryRtn, ZeroFractionFloorIsHonoured) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(64 * 256);
  for (float& v : w) v = nd(rng);
  TernaryOptions opt;
  opt.min_zero_fraction = 0.9;
  Result<format::TernaryMatrix> q = ternary_rtn(w.data(), 64, 256, opt);
  ASSERT_TRUE(q);
  EXPECT_GE(q->zero_fraction(), 0.9 - 1e-9);
  opt.min_zero_fraction = 0.0;
  Result<format::TernaryMatrix> free_fit = ternary_rtn(w.data(), 64, 256, opt);
  ASSERT_TRUE(free_fit);
  EXPECT_LT(free_fit->zero_fraction(), 0.6);  // Gaussian rows: the optimum keeps ~half
}

TEST(TernaryRtn, RejectsBadInput) {
  std::vector<float> w = {1.0f, NAN};
  EXPECT_FALSE(ternary_rtn(w.data(), 1, 2, TernaryOptions{}));
  EXPECT_FALSE(ternary_rtn(w.data(), 0, 2, TernaryOptions{}));
  TernaryOptions bad;
  bad.min_zero_fraction = 1.5;
  EXPECT_FALSE(ternary_rtn(w.data(), 1, 1, bad));
}

// H = X Xᵀ/N of correlated inputs.
std::vector<double> random_hessian(int64_t k, std::mt19937& rng) {
  std::normal_distribution<double> nd(0.0, 1.0);
  const int64_t samples = 4 * k;
  std::vector<double> x(static_cast<size_t>(samples * k));
  for (int64_t s = 0; s < samples; ++s) {
    double prev = 0.0;
    for (int64_t c = 0; c < k; ++c) {
      prev = 0.7 * prev + nd(rng) * (1.0 + 0.1 * static_cast<double>(c % 5));
      x[static_cast<size_t>(s * k + c)] = prev;
    }
  }
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t s = 0; s < samples; ++s) {
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) h[static_cast<size_t>(i * k + j)] += x[static_cast<size_t>(s * k + i)] * x[static_cast<size_t>(s * k + j)];
    }
  }
  for (double& v : h) v /= static_cast<double>(samples);
  return h;
}

TEST(TernaryGptq, ReducesTheCalibratedErrorAgainstRtn) {
  std::mt19937 rng(11);
  const int64_t n = 48;
  const int64_t k = 96;
  std::vector<double> h = random_hessian(k, rng);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& v : w) v = nd(rng);
  ThreadPool pool(2);
  for (bool act_order : {false, true}) {
    for (TernaryScale scale : {TernaryScale::kMse, TernaryScale::kMaxAbs}) {
      GptqOptions gopt;
      gopt.act_order = act_order;
      Result<GptqFactor> f = prepare_gptq(h.data(), k, gopt);
      ASSERT_TRUE(f) << f.status().message();
      TernaryOptions topt;
      topt.scale = scale;
      Result<format::TernaryMatrix> rtn = ternary_rtn(w.data(), n, k, topt);
      Result<format::TernaryMatrix> gq = ternary_gptq(w.data(), n, k, *f, topt, &pool);
      ASSERT_TRUE(rtn && gq);
      ASSERT_TRUE(format::validate(*gq));
      const double e_rtn = ternary_calibrated_error(w.data(), *rtn, h.data());
      const double e_gptq = ternary_calibrated_error(w.data(), *gq, h.data());
      EXPECT_LT(e_gptq, 0.9 * e_rtn) << "act_order " << act_order << " scale " << static_cast<int>(scale);
    }
  }
}

TEST(TernaryGptq, IdentityHessianEqualsRtn) {
  const int64_t n = 5;
  const int64_t k = 40;
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) h[static_cast<size_t>(i * k + i)] = 1.0;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& v : w) v = nd(rng);
  GptqOptions gopt;
  gopt.percdamp = 0.0;
  Result<GptqFactor> f = prepare_gptq(h.data(), k, gopt);
  ASSERT_TRUE(f);
  Result<format::TernaryMatrix> rtn = ternary_rtn(w.data(), n, k, TernaryOptions{});
  Result<format::TernaryMatrix> gq = ternary_gptq(w.data(), n, k, *f, TernaryOptions{});
  ASSERT_TRUE(rtn && gq);
  EXPECT_EQ(rtn->t, gq->t);
  EXPECT_EQ(rtn->scale, gq->scale);
}

}  // namespace
}  // namespace lutq::quant
