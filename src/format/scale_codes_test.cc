// Compressed scales: the decoding rule, code packing, encode/decode round trips over shapes,
// orientations, offsets, plane counts and code widths, the error bound and the validation.
#include "format/scale_codes.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/fp16.h"
#include "support/random_bcq.h"

namespace lutq::format {
namespace {

TEST(ScaleCodes, Fp16FromDoubleRoundsOnce) {
  for (uint32_t h = 0; h < 0x7c00u; h += 7) {  // every 7th finite positive fp16: exact
    const double v = fp16_to_fp32(static_cast<uint16_t>(h));
    EXPECT_EQ(fp16_from_double(v), h);
    EXPECT_EQ(fp16_from_double(-v), static_cast<uint16_t>(h | 0x8000u));
  }
  // 1 + 2^-11 is the tie between 1 and 1 + 2^-10: ties to even (1). Just above it rounds up; a
  // double just above the tie that would round to the tie in fp32 must still round up.
  EXPECT_EQ(fp16_from_double(1.0 + std::ldexp(1.0, -11)), fp32_to_fp16(1.0f));
  EXPECT_EQ(fp16_from_double(1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40)), fp32_to_fp16(1.0f + 0x1p-10f));
  EXPECT_EQ(fp16_from_double(std::ldexp(1.0, -25)), 0u);  // half the smallest subnormal: ties to 0
  EXPECT_EQ(fp16_from_double(std::ldexp(1.0, -24)), 1u);
  EXPECT_EQ(fp16_from_double(70000.0), 0x7c00u);
}

TEST(ScaleCodes, PackUnpackRoundTrip) {
  std::mt19937_64 rng(testing::test_seed());
  for (int bits = kMinScaleBits; bits <= kMaxScaleBits; ++bits) {
    for (int64_t count : {0, 1, 3, 7, 8, 13, 100}) {
      std::vector<uint8_t> codes(static_cast<size_t>(count));
      for (uint8_t& c : codes) c = static_cast<uint8_t>(rng() % (1u << bits));
      const std::vector<uint8_t> packed = pack_codes(codes, bits);
      EXPECT_EQ(static_cast<int64_t>(packed.size()), (count * bits + 7) / 8);
      std::vector<uint8_t> back;
      ASSERT_TRUE(unpack_codes(packed, count, bits, back).is_ok());
      EXPECT_EQ(back, codes);
      if ((count * bits) % 8 != 0) {  // a set padding bit is refused
        std::vector<uint8_t> bad = packed;
        bad.back() |= 0x80u;
        EXPECT_FALSE(unpack_codes(bad, count, bits, back).is_ok());
      }
      std::vector<uint8_t> longer = packed;
      longer.push_back(0);
      EXPECT_FALSE(unpack_codes(longer, count, bits, back).is_ok());
    }
  }
  // LSB first: codes 1, 2 of 4 bits are the byte 0x21.
  EXPECT_EQ(pack_codes(std::vector<uint8_t>{1, 2}, 4), std::vector<uint8_t>{0x21});
  std::vector<uint8_t> out;
  EXPECT_FALSE(unpack_codes(std::vector<uint8_t>{0}, 1, 3, out).is_ok());  // bits outside 4..8
}

// Half an fp16 ulp of |x| (the rounding of a decoded value), and the smallest subnormal's half.
double half_ulp(double x) {
  int e = 0;
  (void)std::frexp(std::fabs(x), &e);
  return std::ldexp(1.0, std::max(e - 1, -14) - 11);
}

struct Case {
  int64_t n, k;
  BcqConfig cfg;
};

TEST(ScaleCodes, EncodeDecodeRoundTripAndBound) {
  std::mt19937_64 rng(testing::test_seed());
  std::vector<Case> cases;
  for (int q = 1; q <= 4; ++q) {
    for (bool off : {false, true}) {
      cases.push_back({5, 64, {q, 32, Orientation::kPerOC, off}});
      cases.push_back({3, 37, {q, 37, Orientation::kPerOC, off}});  // odd k, g = k
      cases.push_back({64, 13, {q, 32, Orientation::kPerIC, off}});  // odd k, per-IC
      cases.push_back({7, 11, {q, 7, Orientation::kPerIC, off}});   // g = n
    }
  }
  for (const Case& c : cases) {
    const BcqMatrix w = testing::random_bcq(c.n, c.k, c.cfg, rng);
    for (int bits = kMinScaleBits; bits <= kMaxScaleBits; ++bits) {
      SCOPED_TRACE(describe(w) + " bits " + std::to_string(bits));
      Result<BcqMatrix> e = encode_scales(w, bits);
      ASSERT_TRUE(e.is_ok()) << e.status().message();
      ASSERT_TRUE(validate(*e).is_ok());
      ASSERT_TRUE(validate_codes(*e).is_ok());
      EXPECT_TRUE(scales_match_codes(*e));
      BcqMatrix d = *e;
      d.alpha.assign(d.alpha.size(), 0);
      d.offset.assign(d.offset.size(), 0);
      ASSERT_TRUE(decode_scales(d).is_ok());
      testing::expect_same_bcq(d, *e);
      // Every α̂ ≥ 0 and within S/(2(2^b−1)) plus fp16 rounding of |α|; the grid values follow.
      const int q = w.cfg.q;
      const double m = max_code(bits);
      for (int64_t set = 0; set < w.num_scale_sets(); ++set) {
        const int64_t line = line_of_set(w, set);
        for (int i = 0; i < q; ++i) {
          const auto idx = static_cast<size_t>(set * q + i);
          const double s = fp16_to_fp32(e->codes.alpha_super[static_cast<size_t>(line * q + i)]);
          const double a = std::fabs(fp16_to_fp32(w.alpha[idx]));
          const double ah = fp16_to_fp32(e->alpha[idx]);
          EXPECT_GE(ah, 0.0);
          EXPECT_LE(std::fabs(ah - a), s / (2.0 * m) + half_ulp(ah)) << "set " << set << " plane " << i;
        }
      }
      const std::vector<float> before = dequantize(w);
      const std::vector<float> after = dequantize(*e);
      for (int64_t r = 0; r < w.n; ++r) {
        for (int64_t col = 0; col < w.k; ++col) {
          const int64_t set = w.scale_set(r, col);
          double bound = 1e-6;
          for (int i = 0; i < q; ++i) {
            const auto idx = static_cast<size_t>(set * q + i);
            const double s = fp16_to_fp32(e->codes.alpha_super[static_cast<size_t>(line_of_set(w, set) * q + i)]);
            bound += s / (2.0 * m) + half_ulp(fp16_to_fp32(e->alpha[idx]));
          }
          if (w.cfg.has_offset) {
            const int64_t line = line_of_set(w, set);
            const double lo = fp16_to_fp32(e->codes.offset_range[static_cast<size_t>(line * 2)]);
            const double hi = fp16_to_fp32(e->codes.offset_range[static_cast<size_t>(line * 2 + 1)]);
            bound += (hi - lo) / (2.0 * m) + half_ulp(fp16_to_fp32(e->offset[static_cast<size_t>(set)]));
          }
          const auto at = static_cast<size_t>(r * w.k + col);
          EXPECT_LE(std::fabs(static_cast<double>(after[at]) - before[at]), bound) << r << "," << col;
        }
      }
    }
  }
}

TEST(ScaleCodes, TopCodeDecodesToTheSuperScale) {
  std::mt19937_64 rng(testing::test_seed());
  const BcqMatrix w = testing::random_bcq(8, 64, {3, 32, Orientation::kPerOC, true}, rng);
  Result<BcqMatrix> e = encode_scales(w, 6);
  ASSERT_TRUE(e.is_ok());
  for (size_t i = 0; i < e->codes.alpha_super.size(); ++i) {
    EXPECT_EQ(decode_alpha(e->codes.alpha_super[i], max_code(6), 6), e->codes.alpha_super[i]);
  }
  for (size_t l = 0; l < e->codes.offset_range.size() / 2; ++l) {
    const uint16_t lo = e->codes.offset_range[2 * l];
    const uint16_t hi = e->codes.offset_range[2 * l + 1];
    EXPECT_EQ(decode_offset(lo, hi, 0, 6), lo);
    EXPECT_EQ(decode_offset(lo, hi, max_code(6), 6), hi);
  }
}

// The fp32 form of the rule (alpha_step, then one multiply and one rounding to fp16), which the
// kernels and decode_alpha use, gives the definition's value (S·code/(2^B − 1) exactly, rounded
// once) for every finite super scale, code width and code: 15.7 M cases.
TEST(ScaleCodes, Fp32StepDecodesExactlyForEveryCase) {
  int64_t mismatches = 0;
  for (int bits = kMinScaleBits; bits <= kMaxScaleBits; ++bits) {
    for (uint32_t s = 0; s < 0x7c00u; ++s) {
      const auto super = static_cast<uint16_t>(s);
      const float step = alpha_step(super, bits);
      for (int c = 0; c <= max_code(bits); ++c) {
        const uint16_t got = fp32_to_fp16(static_cast<float>(c) * step);
        // The definition: S·code/(2^B − 1) in double (exact to 2^−53), rounded once to fp16.
        const uint16_t want = fp16_from_double(static_cast<double>(fp16_to_fp32(super)) * c / max_code(bits));
        if (decode_alpha(super, c, bits) != want && ++mismatches <= 5) {
          ADD_FAILURE() << "bits " << bits << " super 0x" << std::hex << s << std::dec << " code " << c
                        << ": decode_alpha differs from the definition";
        }
        if (got != want && ++mismatches <= 5) {
          ADD_FAILURE() << "bits " << bits << " super 0x" << std::hex << s << std::dec << " code " << c << ": fp32 form 0x"
                        << std::hex << got << ", decode_alpha 0x" << want;
        }
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// short_super: the smallest short super scale at or above a value; with it, code·step is the
// decoded α exactly (no rounding), and encode_scales chooses it.
TEST(ScaleCodes, ShortSuperScalesDecodeWithoutRounding) {
  std::mt19937_64 rng(testing::test_seed());
  std::uniform_real_distribution<double> log2v(-26.0, 15.9);
  for (int bits = kMinScaleBits; bits <= kMaxScaleBits; ++bits) {
    EXPECT_EQ(short_super(0.0, bits), 0u);
    for (int t = 0; t < 2000; ++t) {
      const double v = std::exp2(log2v(rng));
      const uint16_t s = short_super(v, bits);
      ASSERT_TRUE(is_short_super(s, bits)) << "bits " << bits << " v " << v;
      const double sv = fp16_to_fp32(s);
      if (v <= 65504.0 * 0.75) {
        ASSERT_GE(sv, v) << "bits " << bits;
        ASSERT_LT(sv, v * (1.0 + std::ldexp(1.0, bits - 9)) + std::ldexp(1.0, -24) * max_code(bits)) << "bits " << bits;
      }
      const float step = alpha_step(s, bits);
      for (int c = 0; c <= max_code(bits); ++c) {
        ASSERT_EQ(static_cast<float>(c) * step, fp16_to_fp32(decode_alpha(s, c, bits)))
            << "bits " << bits << " super " << sv << " code " << c;
      }
    }
  }
  const BcqMatrix w = testing::random_bcq(16, 256, {3, 64, Orientation::kPerOC, true}, rng);
  for (int bits = kMinScaleBits; bits <= kMaxScaleBits; ++bits) {
    const BcqMatrix e = encode_scales(w, bits).value();
    for (uint16_t s : e.codes.alpha_super) EXPECT_TRUE(is_short_super(s, bits));
  }
  EXPECT_FALSE(is_short_super(fp32_to_fp16(1.0f + 0x1p-10f), 8));  // 11 significant bits
}

TEST(ScaleCodes, ValidationNamesTheProblem) {
  std::mt19937_64 rng(testing::test_seed());
  const BcqMatrix w = testing::random_bcq(4, 64, {2, 32, Orientation::kPerOC, true}, rng);
  Result<BcqMatrix> good = encode_scales(w, 5);
  ASSERT_TRUE(good.is_ok());
  const auto expect_error = [&](const std::function<void(BcqMatrix&)>& damage, const std::string& what) {
    BcqMatrix b = *good;
    damage(b);
    const Status s = validate_codes(b);
    ASSERT_FALSE(s.is_ok()) << what;
    EXPECT_NE(s.message().find(what), std::string::npos) << s.message();
    EXPECT_FALSE(decode_scales(b).is_ok());
  };
  expect_error([](BcqMatrix& b) { b.codes.bits = 3; }, "scale bits 3");
  expect_error([](BcqMatrix& b) { b.codes.bits = 9; }, "scale bits 9");
  expect_error([](BcqMatrix& b) { b.codes.alpha_code[3] = 32; }, "scale code 3 exceeds 31");
  expect_error([](BcqMatrix& b) { b.codes.offset_code[1] = 200; }, "offset code 1 exceeds");
  expect_error([](BcqMatrix& b) { b.codes.alpha_code.pop_back(); }, "scale codes buffer");
  expect_error([](BcqMatrix& b) { b.codes.alpha_super.push_back(0); }, "super scale buffer");
  expect_error([](BcqMatrix& b) { b.codes.offset_range.clear(); }, "offset range buffer");
  expect_error([](BcqMatrix& b) { b.codes.alpha_super[0] = 0xbc00u; }, "super scale 0 is negative");
  expect_error([](BcqMatrix& b) { b.codes.alpha_super[1] = 0x7c00u; }, "super scale 1 is negative or not finite");
  expect_error([](BcqMatrix& b) { std::swap(b.codes.offset_range[0], b.codes.offset_range[1]); b.codes.offset_range[0] = 0x4000u; b.codes.offset_range[1] = 0x3c00u; },
               "offset range of line 0");
  expect_error([](BcqMatrix& b) { b.codes.bits = 0; }, "codes without a bit count");
  EXPECT_FALSE(encode_scales(w, 3).is_ok());
  EXPECT_FALSE(encode_scales(w, 9).is_ok());
  BcqMatrix changed = *good;
  changed.alpha[0] ^= 1u;
  EXPECT_FALSE(scales_match_codes(changed));
  // The whole check before packing a matrix built in memory: shape, codes and their decoding.
  EXPECT_TRUE(validate_with_codes(*good).is_ok());
  const Status stale = validate_with_codes(changed);
  ASSERT_FALSE(stale.is_ok());
  EXPECT_NE(stale.message().find("not the decoding of their"), std::string::npos) << stale.message();
  BcqMatrix short_alpha = *good;
  short_alpha.alpha.pop_back();
  EXPECT_FALSE(validate_with_codes(short_alpha).is_ok());
}

TEST(ScaleCodes, BitsPerWeightCountsTheStoredForm) {
  std::mt19937_64 rng(testing::test_seed());
  const BcqMatrix w = testing::random_bcq(16, 256, {4, 32, Orientation::kPerOC, true}, rng);
  EXPECT_DOUBLE_EQ(w.bits_per_weight(), 4.0 + 16.0 * 5.0 / 32.0);
  Result<BcqMatrix> e = encode_scales(w, 6);
  ASSERT_TRUE(e.is_ok());
  // 4 bits + 6·5/32 for the codes + 16·(4 + 2)/256 per row for the supers and the range.
  EXPECT_DOUBLE_EQ(e->bits_per_weight(), 4.0 + 6.0 * 5.0 / 32.0 + 16.0 * 6.0 / 256.0);
  EXPECT_EQ(e->storage_bytes(), w.storage_bytes());  // held in memory as fp16
  EXPECT_NE(describe(*e).find("scales 6-bit"), std::string::npos);
}

}  // namespace
}  // namespace lutq::format
