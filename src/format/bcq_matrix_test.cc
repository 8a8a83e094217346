#include "format/bcq_matrix.h"

#include <gtest/gtest.h>

#include "core/fp16.h"

namespace lutq::format {
namespace {

TEST(BcqFormat, ValidatesConfigWithClearMessages) {
  auto msg = [](const BcqConfig& c, int64_t n, int64_t k) { return validate_config(c, n, k).message(); };
  EXPECT_TRUE(validate_config({3, 128, Orientation::kPerOC, false}, 7, 256).is_ok());
  EXPECT_TRUE(validate_config({3, 100, Orientation::kPerOC, false}, 7, 100).is_ok());  // g = k
  EXPECT_TRUE(validate_config({3, 17, Orientation::kPerIC, false}, 17, 64).is_ok());  // g = n
  EXPECT_NE(msg({0, 128, Orientation::kPerOC, false}, 4, 128).find("q=0"), std::string::npos);
  EXPECT_NE(msg({9, 128, Orientation::kPerOC, false}, 4, 128).find("q=9"), std::string::npos);
  EXPECT_NE(msg({2, 48, Orientation::kPerOC, false}, 4, 96).find("g=48"), std::string::npos);
  EXPECT_NE(msg({2, 128, Orientation::kPerOC, false}, 4, 192).find("not a multiple"), std::string::npos);
  EXPECT_NE(msg({2, 64, Orientation::kPerIC, false}, 100, 64).find("n=100"), std::string::npos);
  EXPECT_FALSE(validate_config({2, 32, Orientation::kPerOC, false}, 0, 32).is_ok());
  EXPECT_FALSE(validate_config({2, 32, Orientation::kPerOC, false}, int64_t{1} << 33, 32).is_ok());
}

TEST(BcqFormat, SizesAndBitsPerWeight) {
  BcqMatrix w = make_empty(4, 256, {3, 128, Orientation::kPerOC, true}).value();
  EXPECT_EQ(w.bits.size(), 3u * 4 * 32);
  EXPECT_EQ(w.alpha.size(), 4u * 2 * 3);
  EXPECT_EQ(w.offset.size(), 4u * 2);
  w.alpha[1] = 0x3c00;  // 1.0 in plane 1 only: not uniform, every α stored
  EXPECT_FALSE(has_uniform_scales(w));
  EXPECT_DOUBLE_EQ(w.bits_per_weight(), 3.0 + 16.0 * 4 / 128);  // methods.md: q=3, g=128, offset: 3.5
  // Uniform scales (α_i = α_0·2^i in every set) store α_0 and the offset: 3 + 16·2/128.
  for (size_t set = 0; set < 8; ++set) {
    w.alpha[set * 3] = 0x3800;      // 0.5
    w.alpha[set * 3 + 1] = 0x3c00;  // 1
    w.alpha[set * 3 + 2] = 0x4000;  // 2
  }
  EXPECT_TRUE(has_uniform_scales(w));
  EXPECT_DOUBLE_EQ(w.bits_per_weight(), 3.0 + 16.0 * 2 / 128);
  w.alpha[5] = 0xc000;  // −2: the sign differs from α_0's
  EXPECT_FALSE(has_uniform_scales(w));
  BcqMatrix ic = make_empty(64, 10, {2, 32, Orientation::kPerIC, false}).value();
  EXPECT_EQ(ic.row_bytes(), 2);
  EXPECT_EQ(ic.alpha.size(), 2u * 10 * 2);
  EXPECT_TRUE(validate(ic).is_ok());
}

TEST(BcqFormat, ValidateCatchesCorruption) {
  BcqMatrix w = make_empty(2, 12, {1, 12, Orientation::kPerOC, false}).value();
  ASSERT_TRUE(validate(w).is_ok());
  w.bits[1] = 0x10;  // bit 12 of row 0: past k
  EXPECT_NE(validate(w).message().find("padding"), std::string::npos);
  w.bits[1] = 0;
  w.alpha.push_back(0);
  EXPECT_FALSE(validate(w).is_ok());
}

TEST(BcqFormat, DequantizeFollowsTheBitPicture) {
  // One row, k = 8, q = 2, per-OC g = 8, offset: w = z + α0·B0 + α1·B1.
  BcqMatrix w = make_empty(1, 8, {2, 8, Orientation::kPerOC, true}).value();
  w.bits[0] = 0b10000001;  // plane 0: +1 at columns 0 and 7
  w.bits[1] = 0b00000011;  // plane 1: +1 at columns 0 and 1
  w.alpha = {fp32_to_fp16(1.0f), fp32_to_fp16(0.5f)};
  w.offset = {fp32_to_fp16(0.25f)};
  const std::vector<float> d = dequantize(w);
  EXPECT_FLOAT_EQ(d[0], 0.25f + 1.0f + 0.5f);
  EXPECT_FLOAT_EQ(d[1], 0.25f - 1.0f + 0.5f);
  EXPECT_FLOAT_EQ(d[2], 0.25f - 1.0f - 0.5f);
  EXPECT_FLOAT_EQ(d[7], 0.25f + 1.0f - 0.5f);
  // Per-IC: rows 0..1 share column scales.
  BcqMatrix ic = make_empty(2, 8, {1, 2, Orientation::kPerIC, false}).value();
  for (int c = 0; c < 8; ++c) ic.alpha[static_cast<size_t>(c)] = fp32_to_fp16(static_cast<float>(c + 1));
  ic.bits[1] = 0xff;  // row 1 all +1
  const std::vector<float> e = dequantize(ic);
  EXPECT_FLOAT_EQ(e[3], -4.0f);
  EXPECT_FLOAT_EQ(e[8 + 3], 4.0f);
}

}  // namespace
}  // namespace lutq::format
