// ValueGrid (quant/group_fit.h): the sorted grid of offset ± α_i sums and the nearest-value
// assignment every fit shares.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "quant/group_fit.h"

namespace lutq::quant::detail {
namespace {

TEST(ValueGrid, AssignGivesEachValueItsNearestCodeAndResidual) {
  // α = (1, 0.5), offset 0.25: values −1.25 −0.25 0.75 1.75 with codes 0b00 0b10 0b01 0b11.
  const double alpha[2] = {1.0, 0.5};
  ValueGrid grid;
  grid.build(alpha, 2, 0.25);
  ASSERT_EQ(grid.size(), 4);
  const std::vector<double> values(grid.values(), grid.values() + 4);
  EXPECT_EQ(values, (std::vector<double>{-1.25, -0.25, 0.75, 1.75}));
  const std::vector<uint8_t> codes(grid.codes(), grid.codes() + 4);
  EXPECT_EQ(codes, (std::vector<uint8_t>{0, 2, 1, 3}));
  // Far below, between, a tie (0.25 is halfway between −0.25 and 0.75: the upper value), far above.
  const float v[5] = {-9.0f, -0.5f, 0.25f, 1.5f, 9.0f};
  std::vector<int64_t> order;
  std::vector<uint8_t> got;
  std::vector<double> residual;
  grid.assign(v, 5, [&](int64_t j, uint8_t code, double r) {
    order.push_back(j);
    got.push_back(code);
    residual.push_back(r);
  });
  EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(got, (std::vector<uint8_t>{0, 2, 1, 3, 3}));
  EXPECT_EQ(residual, (std::vector<double>{-7.75, -0.25, -0.5, -0.25, 7.25}));
  for (int j = 0; j < 5; ++j) EXPECT_EQ(grid.nearest(v[j]), nearest_index(grid.mids(), grid.size(), v[j]));
}

}  // namespace
}  // namespace lutq::quant::detail
