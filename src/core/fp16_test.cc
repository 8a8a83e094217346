// fp16_from_double (bit-level rounding) against its definition: scale to the fp16 quantum at |x|,
// round to nearest even with nearbyint, convert the representable result. Every fp16 value, the
// midpoints between neighbours and the doubles next to them, and random doubles over the range.
#include "core/fp16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "support/random_bcq.h"

namespace lutq {
namespace {

uint16_t definition(double x) {
  if (!std::isfinite(x)) return fp32_to_fp16(static_cast<float>(x));
  const double a = std::fabs(x);
  int e = 0;
  (void)std::frexp(a, &e);
  const int exp = e - 1 < -14 ? -14 : e - 1;
  const double quantum = std::ldexp(1.0, exp - 10);
  const double r = std::nearbyint(a / quantum) * quantum;
  return fp32_to_fp16(static_cast<float>(std::signbit(x) ? -r : r));
}

void expect_same(double x) {
  ASSERT_EQ(fp16_from_double(x), definition(x)) << std::hexfloat << x;
}

TEST(Fp16FromDouble, EveryValueAndMidpoint) {
  for (uint32_t h = 0; h < 0x7c00u; ++h) {
    const double v = fp16_to_fp32(static_cast<uint16_t>(h));
    const double next = h + 1 == 0x7c00u ? 65536.0 : static_cast<double>(fp16_to_fp32(static_cast<uint16_t>(h + 1)));
    const double mid = 0.5 * (v + next);
    for (double x : {v, mid, std::nextafter(mid, 0.0), std::nextafter(mid, 1e9), std::nextafter(v, 1e9)}) {
      expect_same(x);
      expect_same(-x);
    }
  }
}

TEST(Fp16FromDouble, RandomAndSpecialValues) {
  std::mt19937_64 rng(testing::test_seed());
  std::uniform_real_distribution<double> log2v(-40.0, 20.0);
  for (int t = 0; t < 2000000; ++t) {
    const double x = std::exp2(log2v(rng));
    expect_same(t % 2 ? x : -x);
  }
  const double inf = std::numeric_limits<double>::infinity();
  for (double x : {0.0, -0.0, inf, -inf, 65504.0, 65519.99, 65520.0, 1e300, 0x1p-25, 0x1p-26, 0x1.8p-25,
                   std::numeric_limits<double>::denorm_min(), std::numeric_limits<double>::min()}) {
    expect_same(x);
    expect_same(-x);
  }
  EXPECT_EQ(fp16_from_double(std::numeric_limits<double>::quiet_NaN()) & 0x7c00u, 0x7c00u);
}

}  // namespace
}  // namespace lutq
