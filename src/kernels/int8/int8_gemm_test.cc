// LLM.int8() GEMM against a double reference with the bound of int8_gemm.h, AVX2 against the
// scalar path, outlier decomposition, bad input.
#include "kernels/int8/int8_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/cpu.h"

namespace lutq::kernels {
namespace {

struct Data {
  int64_t m, n, k;
  std::vector<float> x, w;
};

Data make(int64_t m, int64_t n, int64_t k, uint32_t seed, int outliers) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  Data s{m, n, k, std::vector<float>(static_cast<size_t>(m * k)), std::vector<float>(static_cast<size_t>(n * k))};
  for (float& v : s.x) v = d(rng);
  for (float& v : s.w) v = 0.05f * d(rng);
  for (int o = 0; o < outliers; ++o) {  // a few large features, as in LLM activations
    const int64_t c = (o * 37 + 5) % k;
    for (int64_t t = 0; t < m; ++t) s.x[static_cast<size_t>(t * k + c)] = 20.0f + static_cast<float>(t % 3);
  }
  return s;
}

// Returns the worst |y − exact| / bound; bound from int8_gemm.h.
double worst_ratio(const Data& s, const Int8Weights& q, const std::vector<float>& y, float threshold, double* max_err) {
  const double u = std::ldexp(1.0, -24);
  const double gk = s.k * u / (1.0 - s.k * u);
  double worst = 0.0;
  *max_err = 0.0;
  for (int64_t t = 0; t < s.m; ++t) {
    std::vector<bool> out(static_cast<size_t>(s.k), false);
    for (int64_t c = 0; c < s.k; ++c) {
      for (int64_t tt = 0; tt < s.m; ++tt) {
        if (std::fabs(s.x[static_cast<size_t>(tt * s.k + c)]) >= threshold) out[static_cast<size_t>(c)] = true;
      }
    }
    double amax = 0.0;
    for (int64_t c = 0; c < s.k; ++c) {
      if (!out[static_cast<size_t>(c)]) amax = std::max(amax, std::fabs(static_cast<double>(s.x[static_cast<size_t>(t * s.k + c)])));
    }
    const double st = amax / 127.0;
    for (int64_t r = 0; r < s.n; ++r) {
      const double sw = q.scale[static_cast<size_t>(r)];
      double exact = 0.0, bound = 0.0, mag = 0.0;
      for (int64_t c = 0; c < s.k; ++c) {
        const double xv = s.x[static_cast<size_t>(t * s.k + c)];
        const double wv = s.w[static_cast<size_t>(r * s.k + c)];
        exact += xv * wv;
        mag += std::fabs(xv * wv);
        if (!out[static_cast<size_t>(c)]) bound += std::fabs(xv) * sw / 2 + std::fabs(q.q[static_cast<size_t>(r * s.k + c)] * sw) * st / 2;
      }
      const double got = y[static_cast<size_t>(t * s.n + r)];
      bound += gk * mag + 4 * u * std::fabs(got) + 1e-30;
      worst = std::max(worst, std::fabs(got - exact) / bound);
      *max_err = std::max(*max_err, std::fabs(got - exact));
    }
  }
  return worst;
}

TEST(Int8Gemm, MatchesReferenceWithinBound) {
  ThreadPool pool(2);
  const bool avx2 = detect_cpu().avx2;
  for (int64_t k : {7, 64, 200}) {
    for (int64_t m : {1, 3}) {
      for (float threshold : {6.0f, std::numeric_limits<float>::infinity()}) {
        SCOPED_TRACE("k=" + std::to_string(k) + " m=" + std::to_string(m) + " threshold=" + std::to_string(threshold));
        Data s = make(m, 24, k, static_cast<uint32_t>(k + m), 3);
        auto keep = std::make_shared<const std::vector<float>>(s.w);
        Result<Int8Weights> q = quantize_int8(s.w.data(), s.n, s.k, keep);
        ASSERT_TRUE(q.is_ok());
        std::vector<float> y_ref(static_cast<size_t>(m * s.n)), y_avx(y_ref.size());
        ASSERT_TRUE(int8_gemm(*q, s.x.data(), m, y_ref.data(), {threshold}, pool, false).is_ok());
        double max_err = 0.0;
        EXPECT_LE(worst_ratio(s, *q, y_ref, threshold, &max_err), 1.0);
        if (avx2) {
          ASSERT_TRUE(int8_gemm(*q, s.x.data(), m, y_avx.data(), {threshold}, pool, true).is_ok());
          EXPECT_EQ(y_ref, y_avx);  // exact int32 sums, the rest shared scalar code
        }
      }
    }
  }
}

TEST(Int8Gemm, OutlierDecompositionHelps) {
  ThreadPool pool(1);
  Data s = make(4, 32, 256, 9, 4);
  Result<Int8Weights> q = quantize_int8(s.w.data(), s.n, s.k, std::make_shared<const std::vector<float>>(s.w));
  ASSERT_TRUE(q.is_ok());
  std::vector<float> y6(static_cast<size_t>(4 * s.n)), yinf(y6.size());
  ASSERT_TRUE(int8_gemm(*q, s.x.data(), 4, y6.data(), {6.0f}, pool, false).is_ok());
  ASSERT_TRUE(int8_gemm(*q, s.x.data(), 4, yinf.data(), {std::numeric_limits<float>::infinity()}, pool, false).is_ok());
  double e6 = 0.0, einf = 0.0;
  worst_ratio(s, *q, y6, 6.0f, &e6);
  worst_ratio(s, *q, yinf, std::numeric_limits<float>::infinity(), &einf);
  EXPECT_LT(e6, 0.5 * einf) << "with decomposition " << e6 << ", plain int8 " << einf;
  // Without kept fp32 weights the outlier columns use the dequantized int8 weights: still bounded.
  Result<Int8Weights> q2 = quantize_int8(s.w.data(), s.n, s.k, nullptr);
  ASSERT_TRUE(q2.is_ok());
  ASSERT_TRUE(int8_gemm(*q2, s.x.data(), 4, y6.data(), {6.0f}, pool, false).is_ok());
  for (float v : y6) ASSERT_TRUE(std::isfinite(v));
}

TEST(Int8Gemm, RejectsBadInput) {
  ThreadPool pool(1);
  std::vector<float> w(8, 1.0f), x(4, 1.0f), y(2);
  EXPECT_FALSE(quantize_int8(w.data(), 0, 4, nullptr).is_ok());
  w[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(quantize_int8(w.data(), 2, 4, nullptr).is_ok());
  w[3] = 0.0f;
  Result<Int8Weights> q = quantize_int8(w.data(), 2, 4, nullptr);
  ASSERT_TRUE(q.is_ok());
  EXPECT_FALSE(int8_gemm(*q, x.data(), 0, y.data(), {}, pool, false).is_ok());
  EXPECT_FALSE(int8_gemm(*q, nullptr, 1, y.data(), {}, pool, false).is_ok());
  EXPECT_FALSE(int8_gemm(*q, x.data(), 1, y.data(), {0.0f}, pool, false).is_ok());
  x[1] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(int8_gemm(*q, x.data(), 1, y.data(), {}, pool, false).is_ok());
}

}  // namespace
}  // namespace lutq::kernels
