// Small helpers of the quantizer tests: the calibration second moment of activation rows, and a
// quantizer's result checked (ok, and a valid canonical matrix) on the way out.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "format/bcq_matrix.h"
#include "quant/hessian.h"

namespace lutq::testing {

// H = Σ x xᵀ of x[m][k] (quant/hessian.h).
inline std::vector<double> hessian_of(const std::vector<float>& x, int64_t m, int64_t k) {
  Result<quant::HessianAccumulator> acc = quant::HessianAccumulator::create(k);
  EXPECT_TRUE(acc.is_ok());
  EXPECT_TRUE(acc->add(x.data(), m).is_ok());
  return acc->h();
}

// The matrix of a quantizer's result, expected to be ok and valid (an empty matrix otherwise).
inline format::BcqMatrix ok(Result<format::BcqMatrix> r) {
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  if (!r) return format::BcqMatrix{};
  EXPECT_TRUE(format::validate(*r).is_ok());
  return std::move(r).value();
}

}  // namespace lutq::testing
