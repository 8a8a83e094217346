// Compressed scales in the kernel layouts: the kernels' fp16 rounding without fp16 instructions
// (round_to_fp16_grid) gives the file's decoded α for every super scale, code width and code, and
// for every fp32 value the kernels can form; the code block order (code_at) is a bijection.
#include "kernels/coded_scales.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <set>

#include "core/fp16.h"
#include "format/scale_codes.h"

namespace lutq::kernels {
namespace {

TEST(CodedScales, MagicRoundingGivesTheDecodedAlphaForEveryCode) {
  int64_t mismatches = 0;
  for (int bits = format::kMinScaleBits; bits <= format::kMaxScaleBits; ++bits) {
    for (uint32_t s = 0; s < 0x7c00u; ++s) {
      const auto super = static_cast<uint16_t>(s);
      const float step = format::alpha_step(super, bits);
      for (int c = 0; c <= format::max_code(bits); ++c) {
        const float got = round_to_fp16_grid(static_cast<float>(c) * step);
        const float want = fp16_to_fp32(format::decode_alpha(super, c, bits));
        if (std::bit_cast<uint32_t>(got) != std::bit_cast<uint32_t>(want) && ++mismatches <= 5) {
          ADD_FAILURE() << "bits " << bits << " super 0x" << std::hex << s << std::dec << " code " << c << ": " << got
                        << ", decoded " << want;
        }
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// Every non-negative fp32 below the fp16 overflow threshold (a stride through all of them, plus
// every fp32 of the fp16 subnormal range's binades) rounds as fp32 -> fp16 -> fp32 does.
TEST(CodedScales, MagicRoundingEqualsFp16ConversionOnFp32Values) {
  int64_t mismatches = 0;
  auto check = [&](uint32_t b) {
    const float v = std::bit_cast<float>(b);
    const float want = fp16_to_fp32(fp32_to_fp16(v));
    const float got = round_to_fp16_grid(v);
    if (std::bit_cast<uint32_t>(got) != std::bit_cast<uint32_t>(want) && ++mismatches <= 5) {
      ADD_FAILURE() << "v = " << v << " (0x" << std::hex << b << std::dec << "): " << got << ", fp16 " << want;
    }
  };
  const uint32_t top = std::bit_cast<uint32_t>(65519.0f);
  for (uint32_t b = 0; b <= top; b += 97) check(b);
  for (uint32_t b = std::bit_cast<uint32_t>(0x1p-26f); b < std::bit_cast<uint32_t>(0x1p-13f); ++b) check(b);
  for (uint32_t b = top - 4096; b <= top; ++b) check(b);
  EXPECT_EQ(mismatches, 0);
}

TEST(CodedScales, CodeOrderIsABijection) {
  for (int q = 1; q <= 8; ++q) {
    std::set<int64_t> seen;
    for (int i = 0; i < q; ++i) {
      for (int64_t rt = 0; rt < kCodedTileRows; ++rt) {
        const int64_t at = code_at(i, rt);
        EXPECT_LT(at, unit_alpha_bytes(q, true));
        EXPECT_TRUE(seen.insert(at).second) << "q " << q << " plane " << i << " row " << rt;
      }
    }
  }
}

}  // namespace
}  // namespace lutq::kernels
