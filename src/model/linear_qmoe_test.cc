// Linear over a QMoE-coded ternary matrix: forward equals the dense layer over the decoded
// weights (within the fp32 summation bound), and bytes / describe report the coded form.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/fp16.h"
#include "format/qmoe_code.h"
#include "model/linear.h"
#include "quant/ternary.h"

namespace lutq::model {
namespace {

TEST(LinearQmoe, ForwardMatchesTheDecodedDenseLayer) {
  const int64_t n = 40;
  const int64_t k = 200;
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& v : w) v = nd(rng);
  quant::TernaryOptions topt;
  topt.min_zero_fraction = 0.8;
  Result<format::TernaryMatrix> t = quant::ternary_rtn(w.data(), n, k, topt);
  ASSERT_TRUE(t);
  const format::TernaryMatrix* mats[] = {&*t};
  Result<format::QmoeDictionary> d = format::build_dictionary(mats, format::DictionaryOptions{});
  ASSERT_TRUE(d);
  Result<format::QmoeMatrix> q = format::encode(*t, std::make_shared<const format::QmoeDictionary>(std::move(*d)));
  ASSERT_TRUE(q);
  auto coded = std::make_shared<const format::QmoeMatrix>(std::move(*q));
  auto deq = std::make_shared<const std::vector<float>>(format::dequantize(*t));
  ThreadPool pool(2);
  for (kernels::Isa isa : {kernels::Isa::kScalar, kernels::Isa::kAvx2, kernels::Isa::kAvx512}) {
    Result<Linear> lin = Linear::from_qmoe(coded, isa);
    ASSERT_TRUE(lin) << lin.status().message();
    Result<Linear> dense = Linear::dense(deq, n, k, kernels::Isa::kScalar);
    ASSERT_TRUE(dense);
    EXPECT_NE(lin->describe().find("qmoe"), std::string::npos) << lin->describe();
    EXPECT_EQ(lin->weight_bytes(), static_cast<int64_t>(coded->codes.size() * 2 + (n + 1) * 4 + n * 4));
    EXPECT_TRUE(lin->is_quantized());
    ASSERT_NE(lin->qmoe(), nullptr);
    for (int64_t m : {1, 3, 6}) {
      std::vector<float> x(static_cast<size_t>(m * k));
      for (float& v : x) v = nd(rng);
      std::vector<float> y(static_cast<size_t>(m * n), NAN), yd(static_cast<size_t>(m * n));
      ASSERT_TRUE(lin->forward(x.data(), m, y.data(), pool));
      ASSERT_TRUE(dense->forward(x.data(), m, yd.data(), pool));
      for (int64_t i = 0; i < m * n; ++i) {
        const int64_t r = i % n;
        double mag = 0.0;
        for (int64_t c = 0; c < k; ++c) mag += std::fabs((*deq)[static_cast<size_t>(r * k + c)] * x[static_cast<size_t>((i / n) * k + c)]);
        // Both are within γ_{k+16}·mag of the exact value.
        const double bound = 2.0 * (k + 16) * std::ldexp(1.0, -24) * mag * 1.01;
        ASSERT_LE(std::fabs(y[static_cast<size_t>(i)] - yd[static_cast<size_t>(i)]), bound) << kernels::isa_name(isa) << " element " << i;
      }
    }
  }
  std::shared_ptr<const format::QmoeMatrix> broken = std::make_shared<const format::QmoeMatrix>(format::QmoeMatrix{});
  EXPECT_FALSE(Linear::from_qmoe(broken, kernels::Isa::kScalar));
}

}  // namespace
}  // namespace lutq::model
