// The int8 form of Linear (LinearChoice::int8): built through Linear::quantized, close
// to the dense layer (the kernel's own bound is tested in kernels/int8), described, sized.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "model/linear.h"

namespace lutq::model {
namespace {

TEST(LinearInt8, ForwardCloseToDense) {
  std::mt19937 rng(11);
  std::normal_distribution<float> d(0.0f, 1.0f);
  const int64_t n = 48, k = 96, m = 3;
  auto w = std::make_shared<std::vector<float>>(static_cast<size_t>(n * k));
  for (float& v : *w) v = 0.05f * d(rng);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (float& v : x) v = d(rng);
  x[10] = 30.0f;  // one outlier feature
  ThreadPool pool(2);
  Result<Linear> dense = Linear::dense(w, n, k, kernels::Isa::kScalar);
  ASSERT_TRUE(dense.is_ok());
  std::vector<float> y_dense(static_cast<size_t>(m * n));
  ASSERT_TRUE(dense->forward(x.data(), m, y_dense.data(), pool).is_ok());
  for (float threshold : {6.0f, std::numeric_limits<float>::infinity()}) {
    LinearChoice choice;
    choice.quantize = true;
    choice.int8 = true;
    choice.int8_threshold = threshold;
    Result<Linear> lin = Linear::quantized("t", w->data(), n, k, choice, &pool);
    ASSERT_TRUE(lin.is_ok()) << lin.status().message();
    EXPECT_TRUE(lin->is_quantized());
    EXPECT_EQ(lin->weight_bytes(), n * k + 8 * n);  // codes, scales, row sums
    EXPECT_NE(lin->describe().find(std::isinf(threshold) ? "int8" : "llm-int8"), std::string::npos);
    std::vector<float> y(static_cast<size_t>(m * n));
    ASSERT_TRUE(lin->forward(x.data(), m, y.data(), pool).is_ok());
    double err = 0.0, ref = 0.0;
    for (size_t i = 0; i < y.size(); ++i) {
      err += (y[i] - y_dense[i]) * (y[i] - y_dense[i]);
      ref += y_dense[i] * y_dense[i];
    }
    // 8-bit steps: relative error of a few 1e-2 at most (the outlier row widens the plain
    // int8 step of its token 30/3 times).
    EXPECT_LT(std::sqrt(err / ref), std::isinf(threshold) ? 0.2 : 0.03) << "threshold " << threshold;
  }
  LinearChoice bad;
  bad.quantize = true;
  bad.int8 = true;
  bad.int8_threshold = 0.0f;
  EXPECT_FALSE(Linear::quantized("t", w->data(), n, k, bad, &pool).is_ok());
}

}  // namespace
}  // namespace lutq::model
