// Loss-aware clipping search (quant/clip_search.h): never worse than the plain fit on the
// calibrated loss, row by row; better on heavy-tailed rows; clip = 1 is the plain fit bit for bit;
// independent of the thread count; bad options refused.
#include "quant/clip_search.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/quantize.h"
#include "support/quant_checks.h"
#include "support/random_bcq.h"

namespace lutq::quant {
namespace {

using format::BcqConfig;
using format::BcqMatrix;

// Gaussian rows; every second row Student-t (ν = 2, outliers) when heavy.
std::vector<float> weights(int64_t n, int64_t k, bool heavy, std::mt19937_64& rng) {
  std::normal_distribution<float> gauss(0.0f, 0.05f);
  std::student_t_distribution<float> t2(2.0f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      w[static_cast<size_t>(r * k + c)] = heavy && r % 2 == 0 ? 0.03f * t2(rng) : gauss(rng);
    }
  }
  return w;
}

// H of correlated activation rows with a few outlier channels (quant/hessian.h).
std::vector<double> hessian(int64_t k, std::mt19937_64& rng) {
  const int64_t m = 4 * k;
  std::vector<float> x = lutq::testing::random_activations(m, k, rng);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (int64_t t = 0; t < m; ++t) {
    const float common = gauss(rng);
    for (int64_t c = 0; c < k; ++c) x[static_cast<size_t>(t * k + c)] += 0.5f * common;
  }
  return lutq::testing::hessian_of(x, m, k);
}

using lutq::testing::ok;

std::vector<double> diag(const std::vector<double>& h, int64_t k) {
  std::vector<double> d(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) d[static_cast<size_t>(i)] = h[static_cast<size_t>(i * k + i)];
  return d;
}

TEST(ClipSearch, NeverWorseThanThePlainFitRowByRow) {
  const int64_t n = 24, k = 128;
  ThreadPool pool(2);
  for (Method method : {Method::kRtn, Method::kGreedy, Method::kAlternating}) {
    for (bool heavy : {false, true}) {
      for (bool importance : {false, true}) {
        SCOPED_TRACE(std::string(method_name(method)) + (heavy ? " heavy" : " gaussian") +
                     (importance ? " importance" : ""));
        std::mt19937_64 rng(200 + static_cast<uint64_t>(method) * 4 + (heavy ? 2 : 0) + (importance ? 1 : 0));
        const std::vector<float> w = weights(n, k, heavy, rng);
        const std::vector<double> h = hessian(k, rng);
        const std::vector<double> d = importance ? diag(h, k) : std::vector<double>{};
        QuantOptions opt{method, BcqConfig{3, 32, format::Orientation::kPerOC, true}, 10};
        ClipSearchReport rep;
        const BcqMatrix chosen = ok(clip_search(w.data(), n, k, h.data(), opt, {}, &pool, d, &rep));
        const BcqMatrix plain = ok(quantize(w.data(), n, k, opt, &pool, d));
        const std::vector<double> e_chosen = row_calibrated_errors(w.data(), chosen, h.data(), {});
        const std::vector<double> e_plain = row_calibrated_errors(w.data(), plain, h.data(), {});
        for (int64_t r = 0; r < n; ++r) EXPECT_LE(e_chosen[static_cast<size_t>(r)], e_plain[static_cast<size_t>(r)]) << r;
        const double total_plain = calibrated_error(w.data(), plain, h.data());
        EXPECT_LE(calibrated_error(w.data(), chosen, h.data()), total_plain * (1.0 + 1e-12));
        EXPECT_NEAR(rep.plain_error, total_plain, 1e-9 * total_plain);
        EXPECT_LE(rep.chosen_error, rep.plain_error);
        ASSERT_EQ(rep.ratios.size(), 9u);
        EXPECT_EQ(rep.ratios.front(), 1.0);
      }
    }
  }
}

TEST(ClipSearch, BetterOnHeavyTailedRows) {
  const int64_t n = 32, k = 256;
  std::mt19937_64 rng(300);
  const std::vector<float> w = weights(n, k, true, rng);
  const std::vector<double> h = hessian(k, rng);
  for (Method method : {Method::kRtn, Method::kAlternating}) {
    SCOPED_TRACE(method_name(method));
    QuantOptions opt{method, BcqConfig{3, 64, format::Orientation::kPerOC, true}, 10};
    ClipSearchReport rep;
    const BcqMatrix chosen = ok(clip_search(w.data(), n, k, h.data(), opt, {}, nullptr, {}, &rep));
    const double e_plain = calibrated_error(w.data(), ok(quantize(w.data(), n, k, opt)), h.data());
    const double e_chosen = calibrated_error(w.data(), chosen, h.data());
    // RTN's range-covering grid loses most to outliers; alternating's least-squares grid already
    // gives them less room.
    EXPECT_LT(e_chosen, (method == Method::kRtn ? 0.9 : 0.99) * e_plain) << "clip search " << e_chosen << " vs plain " << e_plain;
    EXPECT_LT(rep.rows.front(), n);  // some rows clipped
  }
}

TEST(ClipSearch, RatioOneIsThePlainFit) {
  const int64_t n = 8, k = 64;
  std::mt19937_64 rng(301);
  const std::vector<float> w = weights(n, k, true, rng);
  const std::vector<double> h = hessian(k, rng);
  QuantOptions opt{Method::kAlternating, BcqConfig{3, 32, format::Orientation::kPerOC, true}, 10};
  const BcqMatrix plain = ok(quantize(w.data(), n, k, opt));
  ClipSearchOptions only_one;
  only_one.ratios = {1.0};
  lutq::testing::expect_same_bcq(ok(clip_search(w.data(), n, k, h.data(), opt, only_one)), plain);
  // A clipped fit clamps: the reconstruction's range shrinks.
  opt.method = Method::kRtn;
  opt.clip = 0.5;
  const std::vector<float> clipped = format::dequantize(ok(quantize(w.data(), n, k, opt)));
  opt.clip = 1.0;
  const std::vector<float> full = format::dequantize(ok(quantize(w.data(), n, k, opt)));
  float max_clipped = 0.0f;
  float max_full = 0.0f;
  for (size_t i = 0; i < full.size(); ++i) {
    max_clipped = std::max(max_clipped, std::fabs(clipped[i]));
    max_full = std::max(max_full, std::fabs(full[i]));
  }
  EXPECT_LT(max_clipped, 0.8f * max_full);
}

TEST(ClipSearch, IndependentOfThreadCount) {
  const int64_t n = 40, k = 128;
  std::mt19937_64 rng(302);
  const std::vector<float> w = weights(n, k, true, rng);
  const std::vector<double> h = hessian(k, rng);
  QuantOptions opt{Method::kAlternating, BcqConfig{3, 32, format::Orientation::kPerOC, true}, 10};
  const BcqMatrix one = ok(clip_search(w.data(), n, k, h.data(), opt));
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    lutq::testing::expect_same_bcq(ok(clip_search(w.data(), n, k, h.data(), opt, {}, &pool)), one);
  }
}

TEST(ClipSearch, CompressedScalesAfterTheSearch) {
  const int64_t n = 16, k = 128;
  std::mt19937_64 rng(303);
  const std::vector<float> w = weights(n, k, true, rng);
  const std::vector<double> h = hessian(k, rng);
  QuantOptions opt{Method::kRtn, BcqConfig{3, 32, format::Orientation::kPerOC, true}, 10};
  opt.scale_bits = 6;
  const BcqMatrix m = ok(clip_search(w.data(), n, k, h.data(), opt));
  EXPECT_EQ(m.codes.bits, 6);
}

TEST(ClipSearch, RejectsBadOptions) {
  const int64_t n = 8, k = 64;
  std::mt19937_64 rng(304);
  const std::vector<float> w = weights(n, k, false, rng);
  const std::vector<double> h = hessian(k, rng);
  const QuantOptions good{Method::kRtn, BcqConfig{3, 32, format::Orientation::kPerOC, true}, 10};
  const auto fails = [&](const Result<BcqMatrix>& r, const std::string& needle) {
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  };
  fails(clip_search(w.data(), n, k, nullptr, good), "calibration");
  QuantOptions per_ic = good;
  per_ic.cfg.orientation = format::Orientation::kPerIC;
  per_ic.cfg.g = 8;
  fails(clip_search(w.data(), n, k, h.data(), per_ic), "per-OC");
  ClipSearchOptions bad;
  bad.ratios = {1.0, 0.0};
  fails(clip_search(w.data(), n, k, h.data(), good, bad), "ratio");
  bad.ratios = {1.5};
  fails(clip_search(w.data(), n, k, h.data(), good, bad), "ratio");
  QuantOptions clip = good;
  clip.clip = 0.0;
  fails(quantize(w.data(), n, k, clip), "clip");
  clip.clip = 0.5;
  clip.cfg = per_ic.cfg;
  fails(quantize(w.data(), n, k, clip), "per-OC");
  QuantOptions bad_g = good;
  bad_g.cfg.g = 48;
  fails(clip_search(w.data(), n, k, h.data(), bad_g), "48");
}

}  // namespace
}  // namespace lutq::quant
