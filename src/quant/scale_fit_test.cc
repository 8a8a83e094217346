// Quantizing against compressed scales: the stored codes decode to exactly the matrix the
// quantizer returns, every bit is the nearest decoded grid value's, the code search never loses
// to rounded codes, scale_bits 0 is today's fp16 quantizer, and GPTQ keeps its codes consistent.
#include "quant/scale_fit.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/scale_codes.h"
#include "quant/gptq.h"
#include "quant/quantize.h"
#include "support/random_bcq.h"

namespace lutq::quant {
namespace {

using format::BcqConfig;
using format::BcqMatrix;
using format::Orientation;

std::vector<float> heavy_tailed(int64_t n, int64_t k, std::mt19937& rng) {
  std::student_t_distribution<float> dist(4.0f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.02f * dist(rng) * (1.0f + static_cast<float>(i % 5));
  return w;
}

std::vector<double> importance_of(int64_t k, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> d(static_cast<size_t>(k));
  for (double& x : d) x = std::exp(4.0 * u(rng));
  return d;
}

double weighted_error(const std::vector<float>& w, const BcqMatrix& m, const std::vector<double>& d) {
  const std::vector<float> back = format::dequantize(m);
  double e = 0.0;
  for (int64_t r = 0; r < m.n; ++r) {
    for (int64_t c = 0; c < m.k; ++c) {
      const double x = static_cast<double>(w[static_cast<size_t>(r * m.k + c)]) - back[static_cast<size_t>(r * m.k + c)];
      e += (d.empty() ? 1.0 : d[static_cast<size_t>(c)]) * x * x;
    }
  }
  return e;
}

// Every weight of m sits on a nearest value of its group's (decoded) grid.
void expect_nearest(const std::vector<float>& w, const BcqMatrix& m) {
  const std::vector<float> back = format::dequantize(m);
  for (int64_t r = 0; r < m.n; ++r) {
    for (int64_t c = 0; c < m.k; ++c) {
      const int64_t set = m.scale_set(r, c);
      double best = 1e300;
      for (int code = 0; code < (1 << m.cfg.q); ++code) {
        double v = m.cfg.has_offset ? fp16_to_fp32(m.offset[static_cast<size_t>(set)]) : 0.0;
        for (int i = 0; i < m.cfg.q; ++i) {
          const double a = fp16_to_fp32(m.alpha[static_cast<size_t>(set * m.cfg.q + i)]);
          v += ((code >> i) & 1) ? a : -a;
        }
        best = std::min(best, std::fabs(v - w[static_cast<size_t>(r * m.k + c)]));
      }
      const double got = std::fabs(static_cast<double>(back[static_cast<size_t>(r * m.k + c)]) - w[static_cast<size_t>(r * m.k + c)]);
      ASSERT_LE(got, best + 1e-6) << r << "," << c;
    }
  }
}

TEST(ScaleFit, QuantizeStoresCodesThatDecodeToItsMatrix) {
  std::mt19937 rng(static_cast<uint32_t>(testing::test_seed()));
  ThreadPool pool(2);
  for (Method method : {Method::kRtn, Method::kGreedy, Method::kAlternating}) {
    for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
      for (int q : {1, 2, 3, 4}) {
        for (int bits : {4, 6, 8}) {
          const int64_t n = 64, k = 96;
          const std::vector<float> w = heavy_tailed(n, k, rng);
          const std::vector<double> d = importance_of(k, rng);
          QuantOptions opt;
          opt.method = method;
          opt.cfg = {q, 32, o, q % 2 == 0};
          opt.scale_bits = bits;
          SCOPED_TRACE(std::string(method_name(method)) + " " + format::orientation_name(o) + " q" + std::to_string(q) +
                       " b" + std::to_string(bits));
          Result<BcqMatrix> m = quantize(w.data(), n, k, opt, &pool, o == Orientation::kPerOC ? d : std::vector<double>{});
          ASSERT_TRUE(m.is_ok()) << m.status().message();
          EXPECT_TRUE(format::validate(*m).is_ok());
          EXPECT_EQ(m->codes.bits, bits);
          EXPECT_TRUE(format::scales_match_codes(*m));
          BcqMatrix decoded = *m;
          decoded.alpha.clear();
          decoded.offset.clear();
          ASSERT_TRUE(format::decode_scales(decoded).is_ok());
          testing::expect_same_bcq(decoded, *m);
          if (o == Orientation::kPerIC) expect_nearest(w, *m);  // per-OC with importance: nearest too
          // The same with one thread.
          Result<BcqMatrix> one = quantize(w.data(), n, k, opt, nullptr, o == Orientation::kPerOC ? d : std::vector<double>{});
          ASSERT_TRUE(one.is_ok());
          testing::expect_same_bcq(*one, *m);
        }
      }
    }
  }
}

TEST(ScaleFit, ScaleBitsZeroIsTheFp16Quantizer) {
  std::mt19937 rng(static_cast<uint32_t>(testing::test_seed()));
  const std::vector<float> w = heavy_tailed(32, 128, rng);
  QuantOptions a;
  a.cfg = {3, 32, Orientation::kPerOC, true};
  QuantOptions b = a;
  b.scale_bits = 0;
  Result<BcqMatrix> ma = quantize(w.data(), 32, 128, a);
  Result<BcqMatrix> mb = quantize(w.data(), 32, 128, b);
  ASSERT_TRUE(ma.is_ok() && mb.is_ok());
  testing::expect_same_bcq(*mb, *ma);
  EXPECT_EQ(mb->codes.bits, 0);
  for (int bad : {1, 3, 9, -1}) {
    b.scale_bits = bad;
    Result<BcqMatrix> r = quantize(w.data(), 32, 128, b);
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("scale bits"), std::string::npos) << r.status().message();
  }
}

TEST(ScaleFit, CodeSearchNeverLosesToRoundedCodes) {
  std::mt19937 rng(static_cast<uint32_t>(testing::test_seed()));
  int better = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int q = 1 + trial % 4;
    const int bits = 4 + trial % 5;
    const bool off = trial % 3 == 0;
    const int64_t len = 32;
    const std::vector<float> v = heavy_tailed(1, len, rng);
    const std::vector<double> d = importance_of(len, rng);
    float alpha[format::kMaxBits];
    float z = 0.0f;
    std::vector<uint8_t> signs(static_cast<size_t>(q * len));
    fit_group(v.data(), len, q, Method::kAlternating, off, 10, alpha, &z, signs.data(), d.data());
    // The line's scales: a little above the group's own (other groups of the line are larger).
    uint16_t super[format::kMaxBits];
    uint8_t codes[format::kMaxBits];
    for (int i = 0; i < q; ++i) {
      super[i] = fp32_to_fp16(1.3f * std::fabs(alpha[i]) + 1e-3f);
      codes[i] = static_cast<uint8_t>(format::nearest_code(std::fabs(alpha[i]), 0.0, fp16_to_fp32(super[i]), bits));
    }
    detail::LineScales line{super, fp32_to_fp16(z - 0.05f), fp32_to_fp16(z + 0.1f)};
    uint8_t zc = static_cast<uint8_t>(format::nearest_code(z, fp16_to_fp32(line.zmin), fp16_to_fp32(line.zmax), bits));
    uint8_t codes0[format::kMaxBits];
    std::copy(codes, codes + q, codes0);
    uint8_t zc0 = zc;
    std::vector<uint8_t> elem(static_cast<size_t>(len));
    detail::CodeSearch search;
    const double plain = search.run(v.data(), d.data(), len, q, bits, off, line, codes0, &zc0, elem.data(), 0);
    const double searched = search.run(v.data(), d.data(), len, q, bits, off, line, codes, &zc, elem.data());
    EXPECT_LE(searched, plain) << "trial " << trial;
    better += searched < plain ? 1 : 0;
  }
  EXPECT_GT(better, 0);  // the search finds something on random groups
}

TEST(ScaleFit, EightBitCodesCostLittleError) {
  std::mt19937 rng(static_cast<uint32_t>(testing::test_seed()));
  const int64_t n = 64, k = 256;
  const std::vector<float> w = heavy_tailed(n, k, rng);
  QuantOptions opt;
  opt.cfg = {3, 32, Orientation::kPerOC, true};
  Result<BcqMatrix> fp = quantize(w.data(), n, k, opt);
  opt.scale_bits = 8;
  Result<BcqMatrix> c8 = quantize(w.data(), n, k, opt);
  opt.scale_bits = 4;
  Result<BcqMatrix> c4 = quantize(w.data(), n, k, opt);
  ASSERT_TRUE(fp.is_ok() && c8.is_ok() && c4.is_ok());
  const double e_fp = weighted_error(w, *fp, {});
  const double e8 = weighted_error(w, *c8, {});
  const double e4 = weighted_error(w, *c4, {});
  EXPECT_LT(e8, 1.05 * e_fp);
  EXPECT_LT(e8, e4);
  EXPECT_LT(c8->bits_per_weight(), fp->bits_per_weight());
}

TEST(ScaleFit, LineScalesTakePlanesInCanonicalOrder) {
  // Two groups of one line whose fits list their planes in opposite orders: the super scales are
  // per rank (largest |α| first), not per stored plane.
  Result<BcqMatrix> made = format::make_empty(1, 64, BcqConfig{2, 32, Orientation::kPerOC, false});
  ASSERT_TRUE(made.is_ok());
  BcqMatrix m = std::move(made).value();
  m.alpha = {fp32_to_fp16(0.1f), fp32_to_fp16(-0.5f), fp32_to_fp16(0.4f), fp32_to_fp16(0.2f)};
  Result<format::ScaleCodes> c = fit_line_scales(m, 6);
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  ASSERT_EQ(c->alpha_super.size(), 2u);
  EXPECT_EQ(c->alpha_super[0], format::short_super(fp16_to_fp32(fp32_to_fp16(0.5f)), 6));
  EXPECT_EQ(c->alpha_super[1], format::short_super(fp16_to_fp32(fp32_to_fp16(0.2f)), 6));
  const double s0 = fp16_to_fp32(c->alpha_super[0]);
  const double s1 = fp16_to_fp32(c->alpha_super[1]);
  EXPECT_EQ(c->alpha_code[0], format::nearest_code(fp16_to_fp32(fp32_to_fp16(0.5f)), 0.0, s0, 6));
  EXPECT_EQ(c->alpha_code[1], format::nearest_code(fp16_to_fp32(fp32_to_fp16(0.1f)), 0.0, s1, 6));
  EXPECT_EQ(c->alpha_code[2], format::nearest_code(fp16_to_fp32(fp32_to_fp16(0.4f)), 0.0, s0, 6));
}

TEST(ScaleFit, CodingAFitOutsideTheLineFallsBackToTheLinesCodes) {
  // The line scales and codes come from a fit of v; the group is then "fitted" far outside the
  // line (as after GPTQ's error feedback): the coding is no worse than searching from the
  // line's own codes, and its scales are the decoding of its codes, largest first.
  std::mt19937 rng(static_cast<uint32_t>(testing::test_seed()));
  const int64_t len = 32;
  const std::vector<float> v = heavy_tailed(1, len, rng);
  QuantOptions opt;
  opt.cfg = {3, len, Orientation::kPerOC, true};
  Result<BcqMatrix> fit = quantize(v.data(), 1, len, opt);
  ASSERT_TRUE(fit.is_ok());
  BcqMatrix m = *fit;
  Result<format::ScaleCodes> lines = fit_line_scales(m, 6);
  ASSERT_TRUE(lines.is_ok());
  m.codes = *lines;
  detail::LineScales ls{m.codes.alpha_super.data(), m.codes.offset_range[0], m.codes.offset_range[1]};
  std::vector<uint8_t> elem(static_cast<size_t>(len));
  detail::CodeSearch search;
  uint8_t prior[4] = {m.codes.alpha_code[0], m.codes.alpha_code[1], m.codes.alpha_code[2], m.codes.offset_code[0]};
  const double from_prior = search.run(v.data(), nullptr, len, 3, 6, true, ls, prior, prior + 3, elem.data());
  float alpha[3] = {0.001f, 40.0f * fp16_to_fp32(ls.super[0]), 0.5f * fp16_to_fp32(ls.super[2])};
  float z = fp16_to_fp32(ls.zmax) + 100.0f * fp16_to_fp32(ls.super[0]);
  detail::code_fitted_set(m, 0, v.data(), nullptr, len, search, elem.data(), alpha, &z);
  EXPECT_TRUE(format::scales_match_codes(m));
  EXPECT_GE(alpha[0], alpha[1]);
  EXPECT_GE(alpha[1], alpha[2]);
  EXPECT_EQ(fp32_to_fp16(alpha[0]), m.alpha[0]);
  EXPECT_EQ(fp32_to_fp16(z), m.offset[0]);
  uint8_t got[4] = {m.codes.alpha_code[0], m.codes.alpha_code[1], m.codes.alpha_code[2], m.codes.offset_code[0]};
  const double coded = search.run(v.data(), nullptr, len, 3, 6, true, ls, got, got + 3, elem.data(), 0);
  EXPECT_LE(coded, from_prior);
}

TEST(ScaleFit, GptqCodesAreConsistent) {
  std::mt19937 rng(static_cast<uint32_t>(testing::test_seed()));
  const int64_t n = 64, k = 128, m = 1024;
  const std::vector<float> w = heavy_tailed(n, k, rng);
  // Inputs with per-feature scales and a mild shared component: a well-conditioned H.
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (int64_t t = 0; t < m; ++t) {
    const float shared = dist(rng);
    for (int64_t c = 0; c < k; ++c) x[static_cast<size_t>(t * k + c)] = (dist(rng) + 0.3f * shared) * (1.0f + static_cast<float>(c % 4));
  }
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        h[static_cast<size_t>(i * k + j)] += static_cast<double>(x[static_cast<size_t>(t * k + i)]) * x[static_cast<size_t>(t * k + j)];
      }
    }
  }
  ThreadPool pool(2);
  for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
    for (bool act : {false, true}) {
      GptqOptions opt;
      opt.cfg = {3, 32, o, true};
      opt.method = Method::kAlternating;
      opt.importance = true;
      opt.act_order = act;
      Result<BcqMatrix> fp = gptq(w.data(), n, k, h.data(), opt, &pool);
      opt.scale_bits = 6;
      Result<BcqMatrix> c6 = gptq(w.data(), n, k, h.data(), opt, &pool);
      ASSERT_TRUE(fp.is_ok() && c6.is_ok()) << c6.status().message();
      EXPECT_EQ(c6->codes.bits, 6);
      EXPECT_TRUE(format::validate_codes(*c6).is_ok());
      EXPECT_TRUE(format::scales_match_codes(*c6));
      const double e_fp = calibrated_error(w.data(), *fp, h.data());
      const double e6 = calibrated_error(w.data(), *c6, h.data());
      // e6 / e_fp measured over seeds 1-1000 (median, p99, max): per-OC with act-order (static
      // groups) 1.000, 1.008, 1.012; per-OC without 1.001, 1.012, 1.014; per-IC 1.002-1.003,
      // 1.010, 1.017 (down from tails to 2.4 per-OC and 9.6 per-IC when the lines' scales came
      // from the original weights with 1.5x headroom and clamped fits kept their clamped codes).
      const double bound = 1.1;
      EXPECT_LT(e6, bound * e_fp) << format::orientation_name(o) << " act_order " << act;
      opt.scale_bits = 2;
      EXPECT_FALSE(gptq(w.data(), n, k, h.data(), opt, &pool).is_ok());
    }
  }
}

}  // namespace
}  // namespace lutq::quant
