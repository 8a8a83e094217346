// Compressed scales in the kernel layouts: the kernels' fp16 rounding without fp16 instructions
// (round_to_fp16_grid) gives the file's decoded α for every super scale, code width and code, and
// for every fp32 value the kernels can form; the code block order (code_at) is a bijection; and
// every SIMD backend this CPU runs keeps codes (a smaller layout that unpacks to the same matrix)
// and multiplies bit for bit as the scalar reference does (per-OC) or as its own fp16 layout does
// (per-IC), with short super scales (no rounding) and without (rounded). The bounds against ref: KernelGridCoded (kernel_grid_test).
#include "kernels/coded_scales.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/scale_codes.h"
#include "kernels/kernel.h"
#include "support/random_bcq.h"

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

// The matrix with short super scales (as the encoders write), or with super scales moved off the
// short grid and the alphas decoded again (as an older file may hold): the kernels then round.
format::BcqMatrix coded_matrix(int64_t n, int64_t k, const format::BcqConfig& cfg, int bits, bool short_supers,
                               std::mt19937_64& rng) {
  format::BcqMatrix w = format::encode_scales(testing::random_bcq(n, k, cfg, rng), bits).value();
  if (!short_supers) {
    for (uint16_t& s : w.codes.alpha_super) s = fp32_to_fp16(fp16_to_fp32(s) * 1.0371f);
    EXPECT_TRUE(format::decode_scales(w).is_ok());
  }
  return w;
}

// be on w gives what `other` gives on `other_w`, bit for bit, for several m.
void expect_bit_identical(const Backend& be, const format::BcqMatrix& w, const Backend& other,
                          const format::BcqMatrix& other_w, Precision p, ThreadPool& pool, std::mt19937_64& rng) {
  const PackedMatrix pw = be.repack(w, p);
  PackedMatrix ps = other.repack(other_w, p);
  if (other.isa == Isa::kScalar) ps.uniform = pw.uniform;  // the same algorithm as be's (scalar_spec)
  for (int64_t m : {1, 3, 8, 32}) {
    const std::vector<float> x = testing::random_activations(m, w.k, rng);
    std::vector<float> got(static_cast<size_t>(m * w.n)), want(got.size());
    be.gemm(pw, x.data(), m, got.data(), pool);
    other.gemm(ps, x.data(), m, want.data(), pool);
    for (size_t e = 0; e < got.size(); ++e) {
      ASSERT_EQ(std::bit_cast<uint32_t>(got[e]), std::bit_cast<uint32_t>(want[e]))
          << "m=" << m << " y[" << e / static_cast<size_t>(w.n) << "," << e % static_cast<size_t>(w.n) << "] = " << got[e]
          << ", " << isa_name(other.isa) << " " << want[e];
    }
  }
}

class CodedLayout : public ::testing::TestWithParam<std::tuple<Isa, Precision>> {};

TEST_P(CodedLayout, SmallerRoundTripsAndMatchesScalarBitForBit) {
  const auto [isa, precision] = GetParam();
  const Backend& be = backend(isa);
  if (!be.available(detect_cpu())) GTEST_SKIP() << isa_name(isa) << " backend not available (" << detect_cpu().summary() << ")";
  std::mt19937_64 rng(testing::test_seed());
  ThreadPool pool(2);
  uint32_t seed = 0;
  for (format::Orientation o : {format::Orientation::kPerOC, format::Orientation::kPerIC}) {
    for (int q : {1, 2, 3, 4, 8}) {
      for (int bits : {4, 6, 8}) {
        const bool off = (++seed & 1) != 0;
        // Per-IC keeps codes with more than 4 row blocks: 320 rows are 10 or 5 blocks of 32 / 64.
        const int64_t n = o == format::Orientation::kPerOC ? 33 + (seed % 3) * 31 : 320;
        const format::BcqMatrix w =
            coded_matrix(n, 512, {q, q % 2 == 1 ? 32 : 64, o, off}, bits, seed % 3 != 0, rng);
        SCOPED_TRACE(format::describe(w) + " scale bits " + std::to_string(bits) +
                     (all_supers_short(w) ? ", short supers" : ", rounded supers"));
        const PackedMatrix pw = be.repack(w, precision);
        format::BcqMatrix expanded = w;  // what a layout without codes holds and gives back
        expanded.codes = {};
        testing::expect_same_bcq(be.unpack(pw), keeps_codes(w) ? w : expanded);
        const size_t fp16_bytes = be.repack(expanded, precision).data.size();
        if (keeps_codes(w)) {  // per-OC with q >= 2, per-IC
          EXPECT_LT(pw.data.size(), fp16_bytes);
          // Per-OC kernels repeat the scalar reference's float order; per-IC ones reassociate the
          // offset dot, so there the codes must reproduce the backend's own fp16 layout exactly.
          if (o == format::Orientation::kPerOC) {
            expect_bit_identical(be, w, scalar_backend(), w, precision, pool, rng);
          } else {
            expect_bit_identical(be, w, be, expanded, precision, pool, rng);
          }
        } else {
          EXPECT_EQ(pw.data.size(), fp16_bytes);
        }
        if (HasFailure()) return;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Simd, CodedLayout,
                         ::testing::Combine(::testing::Values(Isa::kAvx2, Isa::kAvx512),
                                            ::testing::Values(Precision::kExact, Precision::kFast)),
                         [](const ::testing::TestParamInfo<std::tuple<Isa, Precision>>& info) {
                           return std::string(isa_name(std::get<0>(info.param))) + "_" +
                                  precision_name(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace lutq::kernels
