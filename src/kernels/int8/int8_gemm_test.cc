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
double worst_ratio(const Data& s, const Int8Weights& q, const std::vector<float>& y, const Int8Options& opt,
                   double* max_err) {
  const float threshold = opt.threshold;
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
    double lo = 0.0, hi = 0.0;
    for (int64_t c = 0; c < s.k; ++c) {
      if (out[static_cast<size_t>(c)]) continue;
      lo = std::min(lo, static_cast<double>(s.x[static_cast<size_t>(t * s.k + c)]));
      hi = std::max(hi, static_cast<double>(s.x[static_cast<size_t>(t * s.k + c)]));
    }
    const double st = opt.zeropoint ? (hi - lo) / 255.0 : std::max(hi, -lo) / 127.0;
    for (int64_t r = 0; r < s.n; ++r) {
      const double sw = q.scale[static_cast<size_t>(r)];
      double exact = 0.0, bound = 0.0, mag = 0.0;
      for (int64_t c = 0; c < s.k; ++c) {
        const double xv = s.x[static_cast<size_t>(t * s.k + c)];
        const double wv = s.w[static_cast<size_t>(r * s.k + c)];
        exact += xv * wv;
        mag += std::fabs(xv * wv);
        if (!out[static_cast<size_t>(c)]) {
          bound += std::fabs(xv) * sw / 2 + std::fabs(q.q[static_cast<size_t>(r * s.k + c)] * sw) * st / 2;
        } else if (!q.fp16.empty()) {
          bound += std::fabs(xv * wv) * std::ldexp(1.0, -11);
        } else {
          bound += std::fabs(xv) * sw / 2;  // the dequantized int8 weight
        }
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
  const std::vector<Int8Isa> isas = int8_isas(detect_cpu());
  for (int64_t k : {7, 64, 200}) {
    for (int64_t m : {1, 3}) {
      for (float threshold : {6.0f, std::numeric_limits<float>::infinity()}) {
        for (bool zeropoint : {false, true}) {
          for (bool keep_fp16 : {false, true}) {
            SCOPED_TRACE("k=" + std::to_string(k) + " m=" + std::to_string(m) + " threshold=" + std::to_string(threshold) +
                         " zeropoint=" + std::to_string(zeropoint) + " fp16=" + std::to_string(keep_fp16));
            Data s = make(m, 24, k, static_cast<uint32_t>(k + m), 3);
            if (zeropoint) {
              for (float& v : s.x) v = std::fabs(v) - 0.2f;  // skewed, as after SwiGLU
            }
            Result<Int8Weights> q = quantize_int8(s.w.data(), s.n, s.k, keep_fp16);
            ASSERT_TRUE(q.is_ok());
            const Int8Options opt{threshold, zeropoint};
            std::vector<float> y_ref(static_cast<size_t>(m * s.n)), y_simd(y_ref.size());
            ASSERT_TRUE(int8_gemm(*q, s.x.data(), m, y_ref.data(), opt, pool, Int8Isa::kScalar).is_ok());
            double max_err = 0.0;
            EXPECT_LE(worst_ratio(s, *q, y_ref, opt, &max_err), 1.0);
            for (Int8Isa isa : isas) {
              ASSERT_TRUE(int8_gemm(*q, s.x.data(), m, y_simd.data(), opt, pool, isa).is_ok());
              // Exact integer sums, the rest shared scalar code: the same bits.
              EXPECT_EQ(y_ref, y_simd) << int8_isa_name(isa);
            }
          }
        }
      }
    }
  }
}

TEST(Int8Gemm, OutlierDecompositionAndZeroPointHelp) {
  ThreadPool pool(1);
  Data s = make(4, 32, 256, 9, 4);
  Result<Int8Weights> q = quantize_int8(s.w.data(), s.n, s.k, /*keep_fp16=*/true);
  ASSERT_TRUE(q.is_ok());
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> y6(static_cast<size_t>(4 * s.n)), yinf(y6.size());
  ASSERT_TRUE(int8_gemm(*q, s.x.data(), 4, y6.data(), {6.0f}, pool, Int8Isa::kScalar).is_ok());
  ASSERT_TRUE(int8_gemm(*q, s.x.data(), 4, yinf.data(), {inf}, pool, Int8Isa::kScalar).is_ok());
  double e6 = 0.0, einf = 0.0;
  worst_ratio(s, *q, y6, {6.0f}, &e6);
  worst_ratio(s, *q, yinf, {inf}, &einf);
  EXPECT_LT(e6, 0.5 * einf) << "with decomposition " << e6 << ", plain int8 " << einf;
  // Skewed activations (all but a few >= 0): the zero point spends its 255 steps on [0, max]
  // and has about half absmax's error.
  Data p = make(4, 32, 256, 10, 0);
  for (float& v : p.x) v = std::fabs(v);
  p.x[3] = -0.01f;
  std::vector<float> ya(static_cast<size_t>(4 * p.n)), yz(ya.size());
  Result<Int8Weights> qp = quantize_int8(p.w.data(), p.n, p.k, false);
  ASSERT_TRUE(qp.is_ok());
  ASSERT_TRUE(int8_gemm(*qp, p.x.data(), 4, ya.data(), {inf, false}, pool, Int8Isa::kScalar).is_ok());
  ASSERT_TRUE(int8_gemm(*qp, p.x.data(), 4, yz.data(), {inf, true}, pool, Int8Isa::kScalar).is_ok());
  double ea = 0.0, ez = 0.0;
  for (int64_t t = 0; t < 4; ++t) {
    for (int64_t r = 0; r < p.n; ++r) {
      double exact = 0.0;
      for (int64_t c = 0; c < p.k; ++c) exact += double{p.x[static_cast<size_t>(t * p.k + c)]} * p.w[static_cast<size_t>(r * p.k + c)];
      ea += std::pow(ya[static_cast<size_t>(t * p.n + r)] - exact, 2);
      ez += std::pow(yz[static_cast<size_t>(t * p.n + r)] - exact, 2);
    }
  }
  EXPECT_LT(ez, ea) << "zero point " << ez << ", absmax " << ea;
}

// Every integer dot product this CPU runs against the scalar one, bit for bit, at the extremes of
// its operands and at every tail length.
TEST(Int8Gemm, DotProductsMatchScalarOnEveryIsa) {
  const std::vector<Int8Isa> isas = int8_isas(detect_cpu());
  std::vector<int16_t> a16(300);
  std::vector<uint8_t> a8(300);
  std::vector<int8_t> b(300);
  uint32_t state = 12345;
  for (int pattern = 0; pattern < 3; ++pattern) {
    for (size_t i = 0; i < a16.size(); ++i) {
      state = state * 1664525u + 1013904223u;
      const auto r = static_cast<int>(state >> 24);  // 0..255
      a16[i] = pattern == 0 ? static_cast<int16_t>(r - 128) : (pattern == 1 ? int16_t{-128} : int16_t{127});
      a8[i] = static_cast<uint8_t>(a16[i] + 128);
      b[i] = pattern == 0 ? static_cast<int8_t>(std::max(-127, r - 128)) : (pattern == 1 ? int8_t{-127} : int8_t{127});
    }
    for (int64_t k = 0; k <= 300; ++k) {
      const int32_t want = int8_detail::dot_ref(a16.data(), b.data(), k);
      int32_t sum_b = 0;
      for (int64_t c = 0; c < k; ++c) sum_b += b[static_cast<size_t>(c)];
      ASSERT_EQ(int8_detail::dot_u8_ref(a8.data(), b.data(), k) - 128 * sum_b, want) << "k=" << k;
      for (Int8Isa isa : isas) {
        int32_t got = want;
        if (isa == Int8Isa::kAvx2) got = int8_detail::dot_avx2(a16.data(), b.data(), k);
        if (isa == Int8Isa::kAvxVnni) got = int8_detail::dot_u8_avxvnni(a8.data(), b.data(), k) - 128 * sum_b;
        if (isa == Int8Isa::kAvx512Vnni) got = int8_detail::dot_u8_avx512vnni(a8.data(), b.data(), k) - 128 * sum_b;
        ASSERT_EQ(got, want) << int8_isa_name(isa) << " pattern " << pattern << " k=" << k;
      }
    }
  }
  std::printf("int8 dot products tested: ");
  for (Int8Isa isa : isas) std::printf("%s ", int8_isa_name(isa));
  std::printf("\n");
}

TEST(Int8Gemm, RejectsBadInput) {
  ThreadPool pool(1);
  std::vector<float> w(8, 1.0f), x(4, 1.0f), y(2);
  EXPECT_FALSE(quantize_int8(w.data(), 0, 4, false).is_ok());
  w[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(quantize_int8(w.data(), 2, 4, false).is_ok());
  w[3] = 0.0f;
  Result<Int8Weights> q = quantize_int8(w.data(), 2, 4, false);
  ASSERT_TRUE(q.is_ok());
  EXPECT_FALSE(int8_gemm(*q, x.data(), 0, y.data(), {}, pool, Int8Isa::kScalar).is_ok());
  EXPECT_FALSE(int8_gemm(*q, nullptr, 1, y.data(), {}, pool, Int8Isa::kScalar).is_ok());
  EXPECT_FALSE(int8_gemm(*q, x.data(), 1, y.data(), {0.0f}, pool, Int8Isa::kScalar).is_ok());
  x[1] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(int8_gemm(*q, x.data(), 1, y.data(), {}, pool, Int8Isa::kScalar).is_ok());
}

}  // namespace
}  // namespace lutq::kernels
