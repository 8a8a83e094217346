// The QMoE kernel on every ISA this CPU runs, against a double-precision reference from the
// decoded ternary matrix, with the fp32 summation bound of docs/kernels.md ("QMoE kernel"):
//     |y − y_exact| ≤ γ_N · |s_r| · Σ_c |t_rc · x_c|,   N = k + 16,   γ_N = N·u/(1 − N·u), u = 2^-24
// From kQmoeLutFromRows rows avx2/avx512 take the matrix through qmoe_as_bcq and the exact-table
// LUT kernels, whose bound sums over every column (their planes hold ±1 where t is 0 too), plus
// the rounding of fp16(s/2) where s/2 is subnormal (at most 2^-25 per α):
//     |y − y_exact| ≤ γ_N · |s_r| · Σ_c |x_c| + 2^-24 · Σ_c |x_c|,   N = k + 18
// Outputs are poisoned with NaN before each call; failures print the worst element and the seed.
#include "kernels/qmoe/qmoe_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "format/qmoe_code.h"
#include "support/random_bcq.h"

namespace lutq::kernels {
namespace {

format::TernaryMatrix random_ternary(int64_t n, int64_t k, double zf, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  format::TernaryMatrix m{n, k, std::vector<int8_t>(static_cast<size_t>(n * k)), std::vector<uint16_t>(static_cast<size_t>(n))};
  for (int8_t& t : m.t) {
    const double x = u(rng);
    t = x < zf ? 0 : (x < zf + (1.0 - zf) / 2 ? 1 : -1);
  }
  for (uint16_t& s : m.scale) s = fp32_to_fp16(static_cast<float>(u(rng) * 2.0 - 1.0));
  return m;
}

QmoeWeights coded(const format::TernaryMatrix& t) {
  const format::TernaryMatrix* mats[] = {&t};
  Result<format::QmoeDictionary> d = format::build_dictionary(mats, format::DictionaryOptions{});
  EXPECT_TRUE(d);
  Result<format::QmoeMatrix> q = format::encode(t, std::make_shared<const format::QmoeDictionary>(std::move(*d)));
  EXPECT_TRUE(q);
  Result<QmoeWeights> w = make_qmoe_weights(std::make_shared<const format::QmoeMatrix>(std::move(*q)));
  EXPECT_TRUE(w) << w.status().message();
  return std::move(*w);
}

void check_isa(Isa isa, const format::TernaryMatrix& t, const QmoeWeights& w, int64_t m, ThreadPool& pool,
               std::mt19937& rng) {
  const int64_t n = t.n;
  const int64_t k = t.k;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (float& v : x) v = nd(rng);
  std::vector<float> y(static_cast<size_t>(m * n), std::numeric_limits<float>::quiet_NaN());
  ASSERT_TRUE(qmoe_gemm(w, x.data(), m, y.data(), pool, isa));
  const double u = std::ldexp(1.0, -24);
  const bool lut_route = m >= kQmoeLutFromRows && isa != Isa::kScalar && isa != Isa::kRef;
  const double big_n = static_cast<double>(k + (lut_route ? 18 : 16));
  const double gamma = big_n * u / (1.0 - big_n * u);
  double worst = -1.0;
  std::string where;
  for (int64_t tt = 0; tt < m; ++tt) {
    for (int64_t r = 0; r < n; ++r) {
      const double s = fp16_to_fp32(t.scale[static_cast<size_t>(r)]);
      double exact = 0.0;
      double mag = 0.0;
      double xmag = 0.0;
      for (int64_t c = 0; c < k; ++c) {
        const double xc = x[static_cast<size_t>(tt * k + c)];
        const double v = t.t[static_cast<size_t>(r * k + c)] * xc;
        exact += v;
        mag += std::fabs(v);
        xmag += std::fabs(xc);
      }
      const double got = y[static_cast<size_t>(tt * n + r)];
      const double err = std::fabs(got - s * exact);
      const double bound = lut_route ? gamma * std::fabs(s) * xmag + u * xmag : gamma * std::fabs(s) * mag;
      const double ratio = bound > 0 ? err / bound : (err == 0 ? 0.0 : 1e30);
      if (!(ratio <= worst) || std::isnan(got)) {
        worst = std::isnan(got) ? 1e30 : ratio;
        where = "m-row " + std::to_string(tt) + " row " + std::to_string(r) + ": got " + std::to_string(got) +
                " exact " + std::to_string(s * exact) + " bound " + std::to_string(bound);
      }
    }
  }
  EXPECT_LE(worst, 1.0) << isa_name(isa) << " n=" << n << " k=" << k << " m=" << m << " worst " << where;
}

TEST(QmoeKernel, EveryIsaWithinTheSummationBound) {
  const auto seed = static_cast<uint32_t>(testing::test_seed());  // LUTQ_TEST_SEED reproduces a run
  std::mt19937 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  ThreadPool one(1);
  ThreadPool two(2);
  const CpuFeatures cpu = detect_cpu();
  for (int64_t n : {1, 17, 64}) {
    for (int64_t k : {1, 31, 100, 576}) {
      for (double zf : {0.3, 0.9}) {
        const format::TernaryMatrix t = random_ternary(n, k, zf, rng);
        const QmoeWeights w = coded(t);
        for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
          if (!qmoe_available(isa, cpu)) {
            std::printf("[ skipped  ] qmoe %s: not on this CPU (%s)\n", isa_name(isa), cpu.summary().c_str());
            continue;
          }
          for (int64_t m : {1, 2, 3, 4, 5, 9, 17}) check_isa(isa, t, w, m, m % 2 ? one : two, rng);
        }
      }
    }
  }
}

TEST(QmoeKernel, AsBcqEqualsTheTernaryMatrix) {
  // Σ_i α_i·B_i = s·t for every element: the planes and α of qmoe_as_bcq, exactly.
  std::mt19937 rng(5);
  for (int64_t k : {1, 31, 64, 100, 577}) {
    const format::TernaryMatrix t = random_ternary(19, k, 0.6, rng);
    const QmoeWeights w = coded(t);
    const format::BcqMatrix b = qmoe_as_bcq(w);
    ThreadPool two(2);
    const format::BcqMatrix split = qmoe_as_bcq(w, &two);  // rows over threads: the same matrix
    EXPECT_EQ(split.bits, b.bits);
    EXPECT_EQ(split.alpha, b.alpha);
    ASSERT_EQ(b.cfg.q, 2);
    ASSERT_EQ(b.cfg.g, k);
    for (int64_t r = 0; r < t.n; ++r) {
      const float s = fp16_to_fp32(t.scale[static_cast<size_t>(r)]);
      for (int64_t c = 0; c < k; ++c) {
        float v = 0.0f;
        for (int i = 0; i < 2; ++i) {
          const float a = fp16_to_fp32(b.alpha[static_cast<size_t>(b.scale_set(r, c) * 2 + i)]);
          v += b.bit(i, r, c) ? a : -a;
        }
        ASSERT_EQ(v, s * static_cast<float>(t.t[static_cast<size_t>(r * k + c)])) << "k=" << k << " row " << r << " col " << c;
      }
      for (int64_t c = k; c < b.row_bytes() * 8; ++c) {
        ASSERT_FALSE(b.bit(0, r, c) || b.bit(1, r, c)) << "padding bit " << c << " set, k=" << k;
      }
    }
  }
}

TEST(QmoeKernel, LutRouteTakesExpertShapes) {
  // The shapes MoE experts have go through the LUT kernels (qmoe_gemm_lut computes, not false).
  std::mt19937 rng(6);
  ThreadPool pool(2);
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (!qmoe_available(isa, detect_cpu())) continue;
    for (int64_t k : {64, 576, 1408}) {
      const format::TernaryMatrix t = random_ternary(40, k, 0.9, rng);
      std::vector<float> x(static_cast<size_t>(kQmoeLutFromRows * k), 0.25f), y(static_cast<size_t>(kQmoeLutFromRows * 40));
      Result<bool> done = qmoe_gemm_lut(coded(t), x.data(), kQmoeLutFromRows, y.data(), pool, isa);
      ASSERT_TRUE(done) << done.status().message();
      EXPECT_TRUE(*done) << isa_name(isa) << " k=" << k;
    }
  }
}

TEST(QmoeKernel, SimdEqualsScalarOnExactlyRepresentableSums) {
  // Small-integer activations: every partial sum is exact in fp32, so all ISAs agree bit for bit.
  std::mt19937 rng(9);
  const format::TernaryMatrix t = random_ternary(33, 1536, 0.85, rng);
  const QmoeWeights w = coded(t);
  std::uniform_int_distribution<int> xi(-8, 8);
  std::vector<float> x(2 * 1536);
  for (float& v : x) v = static_cast<float>(xi(rng));
  ThreadPool pool(2);
  std::vector<float> ref(2 * 33);
  ASSERT_TRUE(qmoe_gemm(w, x.data(), 2, ref.data(), pool, Isa::kScalar));
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (!qmoe_available(isa, detect_cpu())) continue;
    std::vector<float> y(2 * 33, NAN);
    ASSERT_TRUE(qmoe_gemm(w, x.data(), 2, y.data(), pool, isa));
    EXPECT_EQ(y, ref) << isa_name(isa);
  }
}

TEST(QmoeKernel, RefusesBadCalls) {
  std::mt19937 rng(1);
  const format::TernaryMatrix t = random_ternary(4, 40, 0.5, rng);
  const QmoeWeights w = coded(t);
  ThreadPool pool(1);
  std::vector<float> x(40), y(4);
  EXPECT_FALSE(qmoe_gemm(w, x.data(), 0, y.data(), pool, Isa::kScalar));
  EXPECT_FALSE(qmoe_gemm(w, x.data(), 1, y.data(), pool, Isa::kCuda));
  // A table of another dictionary is refused.
  const format::TernaryMatrix other = random_ternary(4, 40, 0.9, rng);
  const QmoeWeights w2 = coded(other);
  EXPECT_FALSE(make_qmoe_weights(w.m, w2.table));
  EXPECT_TRUE(make_qmoe_weights(w.m, w.table));
}

}  // namespace
}  // namespace lutq::kernels
