// Uniform scales (α_i = α_0·2^i in every group, RTN's grids): lut_uniform, the AVX2 layout that
// keeps α_0 alone (round trip, bytes), and the folded fast path equal to the scalar reference bit
// for bit (fp16 and coded scales, several blocks per group, every m tail, one and two threads,
// shared tables beside a plain matrix). The bound against ref: tests/kernel_grid_test.cc
// (KernelGridUniform).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "format/scale_codes.h"
#include "kernels/linear.h"
#include "kernels/lut_tables.h"
#include "support/random_bcq.h"

namespace lutq::kernels {
namespace {

using format::BcqConfig;
using format::BcqMatrix;
using format::Orientation;

bool have_avx2() { return detect_cpu().avx2; }

TEST(UniformScales, DetectedOnlyWherePlanesAreExactPowersOfTwo) {
  std::mt19937_64 rng(7);
  for (int q : {2, 3, 4}) {
    BcqMatrix w = testing::uniform_bcq(40, 128, BcqConfig{q, 32, Orientation::kPerOC, true}, rng);
    EXPECT_TRUE(lut_uniform(w)) << q;
    EXPECT_TRUE(lut_uniform(testing::uniform_coded_bcq(40, 128, BcqConfig{q, 64, Orientation::kPerOC, false}, rng)));
    w.alpha[w.alpha.size() - 1] ^= 1;  // one ulp off in the last group's top plane
    EXPECT_FALSE(lut_uniform(w)) << q;
  }
  // q = 1 gains nothing; q >= 5 takes the byte path; per-IC scales are folded into the tables.
  EXPECT_FALSE(lut_uniform(testing::uniform_bcq(8, 64, BcqConfig{1, 32, Orientation::kPerOC, true}, rng)));
  EXPECT_FALSE(lut_uniform(testing::uniform_bcq(8, 64, BcqConfig{5, 32, Orientation::kPerOC, true}, rng)));
  EXPECT_FALSE(lut_uniform(testing::uniform_bcq(64, 64, BcqConfig{4, 32, Orientation::kPerIC, true}, rng)));
  EXPECT_FALSE(lut_uniform(testing::random_bcq(8, 64, BcqConfig{4, 32, Orientation::kPerOC, true}, rng)));
  // α_0·2^i beyond fp16's range is not uniform (α_i cannot hold it).
  BcqMatrix big = testing::uniform_bcq(1, 32, BcqConfig{4, 32, Orientation::kPerOC, false}, rng);
  big.alpha[0] = fp32_to_fp16(40000.0f);
  big.alpha[1] = fp32_to_fp16(65504.0f);
  EXPECT_FALSE(lut_uniform(big));
}

TEST(UniformScales, Avx2LayoutKeepsAlphaZeroAloneAndRoundTrips) {
  if (!have_avx2()) GTEST_SKIP() << "CPU has no AVX2";
  const Backend& be = avx2_backend();
  std::mt19937_64 rng(11);
  for (bool coded : {false, true}) {
    for (int q : {2, 3, 4}) {
      for (int64_t g : {32, 128, 256}) {
        for (bool off : {false, true}) {
          const BcqConfig cfg{q, g, Orientation::kPerOC, off};
          const BcqMatrix w = coded ? testing::uniform_coded_bcq(45, 256, cfg, rng) : testing::uniform_bcq(45, 256, cfg, rng);
          SCOPED_TRACE(format::describe(w));
          for (Precision p : {Precision::kExact, Precision::kFast}) {
            const PackedMatrix pw = be.repack(w, p);
            ASSERT_TRUE(pw.uniform && pw.layout.uniform && !pw.layout.coded);
            const TileLayout plain = make_tile_layout(w);
            const int64_t unit = q * (g / 8) * 32 + 64 + (off ? 64 : 0);  // planes, α_0, offsets
            EXPECT_EQ(pw.layout.total_bytes, 2 * (256 / g) * unit);
            EXPECT_LT(pw.layout.total_bytes, plain.total_bytes);
            testing::expect_same_bcq(be.unpack(pw), w);
            if (HasFailure()) return;
          }
        }
      }
    }
  }
}

// Codes that decode to uniform scales without being one per group (every plane's super scale
// equal, codes c·2^i): the layout keeps all of them beside it, and unpack gives them back.
TEST(UniformScales, Avx2KeepsUnequalCodesWhole) {
  if (!have_avx2()) GTEST_SKIP() << "CPU has no AVX2";
  std::mt19937_64 rng(13);
  const BcqConfig cfg{4, 32, Orientation::kPerOC, true};
  BcqMatrix w = testing::uniform_coded_bcq(40, 128, cfg, rng);
  for (size_t line = 0; line < w.codes.alpha_super.size(); line += 4) {
    for (size_t i = 1; i < 4; ++i) w.codes.alpha_super[line + i] = w.codes.alpha_super[line];
  }
  for (size_t s = 0; s < w.codes.alpha_code.size(); s += 4) {
    const auto c0 = static_cast<uint8_t>(w.codes.alpha_code[s] % 32);
    for (size_t i = 0; i < 4; ++i) w.codes.alpha_code[s + i] = static_cast<uint8_t>(c0 << i);
  }
  ASSERT_TRUE(format::decode_scales(w).is_ok());
  ASSERT_TRUE(lut_uniform(w));
  const PackedMatrix pw = avx2_backend().repack(w, Precision::kFast);
  ASSERT_TRUE(pw.uniform);
  EXPECT_EQ(pw.source.codes.alpha_code.size(), w.codes.alpha_code.size());
  testing::expect_same_bcq(avx2_backend().unpack(pw), w);
}

// y from `under` (avx2) and from the scalar reference running the same algorithm, bit for bit.
void expect_bit_identical(const BcqMatrix& w, Precision p, int64_t m, ThreadPool& pool, std::mt19937_64& rng) {
  const PackedMatrix pa = avx2_backend().repack(w, p);
  ASSERT_TRUE(pa.uniform);
  const PackedMatrix ps = scalar_spec(w, pa);
  const std::vector<float> x = testing::random_activations(m, w.k, rng);
  std::vector<float> y(static_cast<size_t>(m * w.n), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> want(y.size(), std::numeric_limits<float>::quiet_NaN());
  avx2_backend().gemm(pa, x.data(), m, y.data(), pool);
  scalar_backend().gemm(ps, x.data(), m, want.data(), pool);
  for (size_t e = 0; e < y.size(); ++e) {
    ASSERT_EQ(std::bit_cast<uint32_t>(y[e]), std::bit_cast<uint32_t>(want[e]))
        << format::describe(w) << " " << precision_name(p) << " m=" << m << " threads=" << pool.size() << ": y["
        << e / static_cast<size_t>(w.n) << "," << e % static_cast<size_t>(w.n) << "] = " << y[e] << ", scalar "
        << want[e];
  }
}

TEST(UniformScales, Avx2FoldEqualsScalarBitForBit) {
  if (!have_avx2()) GTEST_SKIP() << "CPU has no AVX2";
  std::mt19937_64 rng(testing::test_seed());
  ThreadPool one(1), two(2);
  // g = 256: one int8 block of 32 row vectors (several int16 folds); g = k = 512 and 96: two and
  // three blocks per group.
  const int64_t cases[][2] = {{32, 256}, {64, 256}, {128, 256}, {256, 512}, {512, 512}, {96, 96}};
  for (bool coded : {false, true}) {
    for (int q : {2, 3, 4}) {
      for (const auto& [g, k] : cases) {
        for (bool off : {false, true}) {
          const BcqConfig cfg{q, g, Orientation::kPerOC, off};
          const BcqMatrix w = coded ? testing::uniform_coded_bcq(37, k, cfg, rng) : testing::uniform_bcq(37, k, cfg, rng);
          for (Precision p : {Precision::kFast, Precision::kExact}) {
            for (int64_t m : {1, 2, 4, 5, 11}) {
              expect_bit_identical(w, p, m, m == 5 ? two : one, rng);
              if (HasFatalFailure()) return;
            }
          }
        }
      }
    }
  }
}

// One table build for q/k/v-like layers where some are uniform and some not: each equals its own
// forward(), bit for bit.
TEST(UniformScales, SharedTablesMixUniformAndPlainMatrices) {
  if (!have_avx2()) GTEST_SKIP() << "CPU has no AVX2";
  std::mt19937_64 rng(5);
  ThreadPool two(2);
  const BcqConfig cfg{4, 64, Orientation::kPerOC, true};
  const std::vector<BcqMatrix> ws = {testing::uniform_bcq(64, 256, cfg, rng), testing::random_bcq(40, 256, cfg, rng),
                                     testing::uniform_coded_bcq(33, 256, cfg, rng)};
  std::vector<BcqLinear> lins;
  for (const BcqMatrix& w : ws) lins.push_back(BcqLinear::create(w, Isa::kAvx2, Precision::kFast, GemmPath::kLut).value());
  for (int64_t m : {1, 6}) {
    const std::vector<float> x = testing::random_activations(m, 256, rng);
    std::vector<std::vector<float>> shared(lins.size()), alone(lins.size());
    std::vector<const BcqLinear*> ptrs;
    std::vector<float*> outs;
    for (size_t j = 0; j < lins.size(); ++j) {
      shared[j].assign(static_cast<size_t>(m * lins[j].n()), 0.0f);
      alone[j].assign(shared[j].size(), 1.0f);
      ASSERT_TRUE(lins[j].forward(x.data(), m, alone[j].data(), two).is_ok());
      ptrs.push_back(&lins[j]);
      outs.push_back(shared[j].data());
    }
    ASSERT_TRUE(BcqLinear::forward_shared(ptrs, x.data(), m, outs, two).is_ok());
    for (size_t j = 0; j < lins.size(); ++j) {
      for (size_t e = 0; e < shared[j].size(); ++e) {
        ASSERT_EQ(std::bit_cast<uint32_t>(shared[j][e]), std::bit_cast<uint32_t>(alone[j][e])) << "layer " << j << " m=" << m << " at " << e;
      }
    }
  }
}

}  // namespace
}  // namespace lutq::kernels
