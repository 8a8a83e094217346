// HessianAccumulator against a double reference, with the bound from hessian.h.
#include "quant/hessian.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/thread_pool.h"

namespace lutq::quant {
namespace {

std::vector<float> random_rows(int64_t m, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (float& v : x) v = dist(rng) * (1.0f + static_cast<float>(&v - x.data()) * 1e-4f);
  return x;
}

// Checks h against Σ x xᵀ in double: |h − ref| <= γ_T·Σ|x_i x_j| + (tiles)·2^-52·Σ|x_i x_j|.
void expect_matches(const HessianAccumulator& acc, const std::vector<float>& x, int64_t m, int64_t k) {
  const double u = std::ldexp(1.0, -24);
  const double t = static_cast<double>(HessianAccumulator::kTileRows);
  const double gamma = t * u / (1.0 - t * u);
  const double tiles = std::ceil(static_cast<double>(m) / t);
  double worst = 0.0;
  int64_t wi = -1, wj = -1;
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      double ref = 0.0, abs_sum = 0.0;
      for (int64_t r = 0; r < m; ++r) {
        const double p = static_cast<double>(x[r * k + i]) * x[r * k + j];
        ref += p;
        abs_sum += std::fabs(p);
      }
      const double bound = gamma * abs_sum + tiles * std::ldexp(abs_sum, -52) + 1e-300;
      const double ratio = std::fabs(acc.h()[static_cast<size_t>(i * k + j)] - ref) / bound;
      if (ratio > worst) {
        worst = ratio;
        wi = i;
        wj = j;
      }
    }
  }
  EXPECT_LE(worst, 1.0) << "worst element (" << wi << ", " << wj << ") at " << worst << " of its bound";
}

TEST(Hessian, MatchesDoubleReference) {
  for (int64_t k : {1, 7, 64, 70}) {
    for (int64_t m : {1, 5, 300, 600}) {
      SCOPED_TRACE("k=" + std::to_string(k) + " m=" + std::to_string(m));
      const std::vector<float> x = random_rows(m, k, static_cast<uint32_t>(k * 1000 + m));
      Result<HessianAccumulator> acc = HessianAccumulator::create(k);
      ASSERT_TRUE(acc.is_ok());
      ASSERT_TRUE(acc->add(x.data(), m).is_ok());
      EXPECT_EQ(acc->rows(), m);
      expect_matches(*acc, x, m, k);
    }
  }
}

TEST(Hessian, StreamingAndThreadsAgree) {
  const int64_t k = 52, m = 700;
  const std::vector<float> x = random_rows(m, k, 7);
  Result<HessianAccumulator> one = HessianAccumulator::create(k);
  Result<HessianAccumulator> parts = HessianAccumulator::create(k);
  ASSERT_TRUE(one.is_ok() && parts.is_ok());
  ThreadPool pool(2);
  ASSERT_TRUE(one->add(x.data(), m).is_ok());
  // Chunks of the same tile boundaries (256) give bitwise the same sums, on any thread count.
  ASSERT_TRUE(parts->add(x.data(), 256, &pool).is_ok());
  ASSERT_TRUE(parts->add(x.data() + 256 * k, m - 256, &pool).is_ok());
  EXPECT_EQ(one->h(), parts->h());
  EXPECT_EQ(parts->rows(), m);
  // Symmetric, and the mean divides by the row count.
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) ASSERT_EQ(one->h()[static_cast<size_t>(i * k + j)], one->h()[static_cast<size_t>(j * k + i)]);
  }
  EXPECT_DOUBLE_EQ(one->mean()[0], one->h()[0] / static_cast<double>(m));
}

TEST(Hessian, RejectsBadInput) {
  EXPECT_FALSE(HessianAccumulator::create(0).is_ok());
  Result<HessianAccumulator> acc = HessianAccumulator::create(3);
  ASSERT_TRUE(acc.is_ok());
  EXPECT_FALSE(acc->add(nullptr, 2).is_ok());
  EXPECT_FALSE(acc->add(nullptr, -1).is_ok());
  std::vector<float> x = {1, 2, 3, 4, std::numeric_limits<float>::quiet_NaN(), 6};
  const Status s = acc->add(x.data(), 2);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("row 1, column 1"), std::string::npos) << s.message();
  EXPECT_EQ(acc->rows(), 0);
  EXPECT_EQ(acc->h()[0], 0.0);  // unchanged on error
}

}  // namespace
}  // namespace lutq::quant
