#include "gen/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace lutq::gen {
namespace {

TEST(SamplerTest, GreedyIsArgmaxLowestTie) {
  Sampler s(SamplerOptions{0.0f, 40, 0.95f, 1});
  const std::vector<float> l = {0.1f, 3.0f, -2.0f, 3.0f, 1.0f};
  EXPECT_EQ(s.sample(l), 1);
  const std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN(), -1.0f, -0.5f};
  EXPECT_EQ(s.sample(nan), 2);
}

TEST(SamplerTest, TopKOneAndTinyTopPAreGreedy) {
  const std::vector<float> l = {0.5f, 0.2f, 0.9f, 0.85f, -1.0f};
  Sampler k1(SamplerOptions{1.0f, 1, 1.0f, 3});
  Sampler p0(SamplerOptions{1.0f, 0, 1e-6f, 3});
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(k1.sample(l), 2);
    EXPECT_EQ(p0.sample(l), 2);
  }
}

TEST(SamplerTest, FrequenciesMatchSoftmax) {
  const std::vector<float> l = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f};
  const float temp = 0.7f;
  std::vector<double> p(l.size());
  double sum = 0.0;
  for (size_t i = 0; i < l.size(); ++i) sum += p[i] = std::exp(l[i] / temp);
  for (double& v : p) v /= sum;
  Sampler s(SamplerOptions{temp, 0, 1.0f, 12345});
  const int n = 20000;
  std::vector<int> count(l.size(), 0);
  for (int i = 0; i < n; ++i) ++count[static_cast<size_t>(s.sample(l))];
  double chi2 = 0.0;
  for (size_t i = 0; i < l.size(); ++i) {
    const double e = p[i] * n;
    chi2 += (count[i] - e) * (count[i] - e) / e;
  }
  EXPECT_LT(chi2, 20.0);  // 4 degrees of freedom: p(chi2 > 20) < 0.001
}

TEST(SamplerTest, SameSeedSameSequence) {
  const std::vector<float> l = {1.0f, 0.9f, 0.8f, 0.7f, 0.6f, 0.5f};
  Sampler a(SamplerOptions{1.0f, 40, 0.95f, 99});
  Sampler b(SamplerOptions{1.0f, 40, 0.95f, 99});
  Sampler c(SamplerOptions{1.0f, 40, 0.95f, 100});
  bool differs = false;
  for (int i = 0; i < 200; ++i) {
    const int32_t x = a.sample(l);
    EXPECT_EQ(x, b.sample(l));
    differs |= x != c.sample(l);
  }
  EXPECT_TRUE(differs);
}

TEST(SamplerTest, HugeLogitsStayFinite) {
  const std::vector<float> l = {1e30f, 1e30f, -1e30f};
  Sampler s(SamplerOptions{1.0f, 0, 1.0f, 5});
  for (int i = 0; i < 50; ++i) {
    const int32_t x = s.sample(l);
    EXPECT_TRUE(x == 0 || x == 1);
  }
}

}  // namespace
}  // namespace lutq::gen
