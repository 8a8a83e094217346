// AdamW and its schedule against the formulas, and on a quadratic.
#include "train/adamw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace lutq::train {
namespace {

TEST(AdamW, FirstStepMovesEachParameterByLrTimesTheSignOfItsGradient) {
  AdamWOptions o;
  o.lr = 0.01;
  o.weight_decay = 0.1;
  AdamW opt(3, o);
  std::vector<float> p = {1.0f, -2.0f, 0.5f};
  const std::vector<float> g = {0.3f, -4.0f, 1e-3f};
  ASSERT_TRUE(opt.step(p, g).is_ok());
  // m̂ = g, v̂ = g², so the step is lr (g / (|g| + eps) + λ p).
  const std::vector<double> p0 = {1.0, -2.0, 0.5};
  for (size_t i = 0; i < p.size(); ++i) {
    const double want = p0[i] - o.lr * (g[i] / (std::fabs(g[i]) + o.eps) + o.weight_decay * p0[i]);
    EXPECT_NEAR(p[i], want, 1e-6) << i;
  }
}

TEST(AdamW, WarmUpThenCosine) {
  AdamWOptions o;
  o.lr = 1.0;
  o.warmup_steps = 4;
  o.total_steps = 14;
  o.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 0), 0.25);
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 3), 1.0);
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 4), 1.0);
  EXPECT_NEAR(scheduled_lr(o, 9), 0.1 + 0.9 * 0.5, 1e-12);  // half way
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 14), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 100), 0.1);
}

TEST(AdamW, MinimisesAQuadratic) {
  AdamWOptions o;
  o.lr = 0.05;
  o.total_steps = 2000;
  o.min_lr_ratio = 0.01;
  ASSERT_TRUE(validate(o).is_ok());
  const std::vector<float> target = {3.0f, -1.0f, 0.25f, 10.0f};
  std::vector<float> p(4, 0.0f), g(4);
  AdamW opt(4, o);
  for (int t = 0; t < 2000; ++t) {
    for (size_t i = 0; i < p.size(); ++i) g[i] = 2.0f * (p[i] - target[i]) * float(i + 1);
    ASSERT_TRUE(opt.step(p, g).is_ok());
  }
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i], target[i], 1e-2) << i;
}

TEST(AdamW, RefusesBadInputAndKeepsTheParameters) {
  AdamW opt(2, AdamWOptions{});
  std::vector<float> p = {1.0f, 2.0f};
  const std::vector<float> bad = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_FALSE(opt.step(p, bad).is_ok());
  EXPECT_EQ(p[0], 1.0f);
  EXPECT_EQ(opt.steps(), 0);
  const std::vector<float> short_grad = {0.0f};
  EXPECT_FALSE(opt.step(p, short_grad).is_ok());
  AdamWOptions o;
  o.warmup_steps = 5;
  o.total_steps = 2;
  EXPECT_FALSE(validate(o).is_ok());
  o = AdamWOptions{};
  o.lr = 0.0;
  EXPECT_FALSE(validate(o).is_ok());
}

}  // namespace
}  // namespace lutq::train
