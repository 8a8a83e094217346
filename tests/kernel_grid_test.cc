// The kernel grid: every backend this CPU runs × table precision × q × g × orientation × offset ×
// awkward shapes × m, against the double-precision `ref` backend, with per-element bounds derived
// in docs/kernels.md; plus the int8 partial sums of every SIMD backend against the scalar LUT
// reference (exact), and repack/unpack round trips. Inputs are fresh each run (seed printed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/fp16.h"
#include "format/scale_codes.h"
#include "kernels/linear.h"
#include "kernels/lut_tables.h"
#include "support/random_bcq.h"

namespace lutq::kernels {
namespace {

using format::BcqConfig;
using format::BcqMatrix;
using format::Orientation;

constexpr double kUnit = 0x1p-24;  // fp32 unit roundoff

double gamma(double count) { return count * kUnit / (1.0 - count * kUnit); }

// Per-element error bound of a LUT backend against `ref` (docs/kernels.md, "Error bounds"):
//   exact: γ_N · M,  M = Σ_c (Σ_i |α_i| + |z|)·|x_c|,  N = k + q + 16 (the longest chain of fp32
//          roundings any term passes through: table build, chunk sums, plane sums, group sums).
//   fast:  the above plus the int8 table rounding, Σ_blocks Σ_i |α_i|·(kb/4)·(s_b/2), where
//          s_b <= max over the block's chunks of Σ_t |x_t| / 127 (per-IC: of |α_i x_t|),
//          with 1e-3 relative slack for the rounding of s_b and 1/s_b themselves.
std::vector<double> error_bounds(const BcqMatrix& w, const float* x, Precision p) {
  const int q = w.cfg.q;
  const int64_t kb = lut_block(w);
  std::vector<double> bound(static_cast<size_t>(w.n));
  auto alpha = [&](int64_t set, int i) { return std::fabs(fp16_to_fp32(w.alpha[static_cast<size_t>(set * q + i)])); };
  // Largest Σ_t |v_t| over the chunks of block b for an activation scaling v_c = f(c)·x_c.
  auto chunk_amax = [&](int64_t b, auto scale) {
    double amax = 0.0;
    for (int64_t c = b * kb; c < (b + 1) * kb; c += kMu) {
      double s = 0.0;
      for (int t = 0; t < kMu; ++t) s += std::fabs(scale(c + t) * x[c + t]);
      amax = std::max(amax, s);
    }
    return amax;
  };
  for (int64_t r = 0; r < w.n; ++r) {
    double mag = 0.0;
    for (int64_t c = 0; c < w.k; ++c) {
      const int64_t set = w.scale_set(r, c);
      double a = w.cfg.has_offset ? std::fabs(fp16_to_fp32(w.offset[static_cast<size_t>(set)])) : 0.0;
      for (int i = 0; i < q; ++i) a += alpha(set, i);
      mag += a * std::fabs(x[c]);
    }
    double b_err = gamma(static_cast<double>(w.k + q + 16)) * mag;
    if (p == Precision::kFast && kb > 0) {
      double tq = 0.0;
      for (int64_t b = 0; b < w.k / kb; ++b) {
        for (int i = 0; i < q; ++i) {
          if (w.cfg.orientation == Orientation::kPerOC) {
            const double s = chunk_amax(b, [](int64_t) { return 1.0; }) / 127.0;
            tq += alpha(w.scale_set(r, b * kb), i) * static_cast<double>(kb / kMu) * s / 2.0;
          } else {
            const double s = chunk_amax(b, [&](int64_t c) { return alpha(w.scale_set(r, c), i); }) / 127.0;
            tq += static_cast<double>(kb / kMu) * s / 2.0;
          }
        }
      }
      b_err += tq * (1.0 + 1e-3);
    }
    bound[static_cast<size_t>(r)] = b_err;
  }
  return bound;
}

std::string describe_case(const BcqMatrix& w, Isa isa, Precision p, int64_t m, int threads, uint64_t seed) {
  std::ostringstream os;
  os << isa_name(isa) << "/" << precision_name(p) << " " << format::describe(w) << " m=" << m
     << " threads=" << threads << " seed=" << seed << " (LUTQ_TEST_SEED reproduces)";
  return os.str();
}

// Runs the backend and ref on the same inputs and checks every output against its bound;
// a failure names the worst element relative to its bound.
void expect_matches_ref(const BcqMatrix& w, Isa isa, Precision p, int64_t m, ThreadPool& pool,
                        std::mt19937_64& rng, uint64_t seed) {
  SCOPED_TRACE(describe_case(w, isa, p, m, pool.size(), seed));
  // The LUT kernels, whatever the policy would choose for m (the int8 GEMM path has its own bound
  // and tests: kernels/int8/bcq_int8_test.cc).
  auto lin = BcqLinear::create(w, isa, p, GemmPath::kLut);
  ASSERT_TRUE(lin.is_ok()) << lin.status().message();
  auto ref = BcqLinear::create(w, Isa::kRef, p);
  ASSERT_TRUE(ref.is_ok()) << ref.status().message();
  const std::vector<float> x = testing::random_activations(m, w.k, rng);
  std::vector<float> y(static_cast<size_t>(m * w.n), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> want(y.size(), std::numeric_limits<float>::quiet_NaN());
  ASSERT_TRUE(lin->forward(x.data(), m, y.data(), pool).is_ok());
  ASSERT_TRUE(ref->forward(x.data(), m, want.data(), pool).is_ok());
  double worst_ratio = 0.0;
  int64_t worst = -1;
  double worst_bound = 0.0;
  for (int64_t mm = 0; mm < m; ++mm) {
    const std::vector<double> bound = error_bounds(w, x.data() + mm * w.k, p);
    for (int64_t r = 0; r < w.n; ++r) {
      const size_t idx = static_cast<size_t>(mm * w.n + r);
      const double err = std::fabs(static_cast<double>(y[idx]) - want[idx]);
      const double ratio = std::isfinite(y[idx]) ? err / std::max(bound[static_cast<size_t>(r)], 1e-30) : INFINITY;
      if (!(ratio <= worst_ratio)) {
        worst_ratio = ratio;
        worst = static_cast<int64_t>(idx);
        worst_bound = bound[static_cast<size_t>(r)];
      }
    }
  }
  ASSERT_LE(worst_ratio, 1.0) << "worst element y[" << worst / w.n << "," << worst % w.n << "] = "
                              << y[static_cast<size_t>(worst)] << ", ref " << want[static_cast<size_t>(worst)]
                              << ", |error| " << std::fabs(y[static_cast<size_t>(worst)] - want[static_cast<size_t>(worst)])
                              << " > bound " << worst_bound;
}

// The LUT backends under test; a backend this CPU lacks skips with the reason.
const auto kGridIsas = ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512);
const auto kSimdIsas = ::testing::Values(Isa::kAvx2, Isa::kAvx512);

// (isa, precision, q, g (0 = the full extent), orientation, offset)
using GridParam = std::tuple<Isa, Precision, int, int, Orientation, bool>;

class KernelGrid : public ::testing::TestWithParam<GridParam> {};

// Shapes: awkward n (1, 17, 33, 100) for per-OC, several multiples of g for k; per-IC needs n a
// multiple of g (awkward n come with g = n).
std::vector<std::pair<int64_t, int64_t>> grid_shapes(Orientation o, int g) {
  std::vector<std::pair<int64_t, int64_t>> shapes;
  if (o == Orientation::kPerOC) {
    const std::vector<int64_t> ks = g == 0 ? std::vector<int64_t>{32, 96, 160, 576}
                                           : std::vector<int64_t>{g, 3 * g, 576 % g == 0 ? 576 : 5 * g};
    const int64_t ns[] = {1, 17, 33, 100};
    for (size_t i = 0; i < ks.size(); ++i) shapes.emplace_back(ns[i % 4], ks[i]);
    shapes.emplace_back(100, ks.back());
  } else {
    const std::vector<int64_t> ns = g == 0 ? std::vector<int64_t>{17, 33, 100} : std::vector<int64_t>{g, 3 * g};
    const int64_t ks[] = {96, 160, 32};
    for (size_t i = 0; i < ns.size(); ++i) shapes.emplace_back(ns[i], ks[i % 3]);
  }
  return shapes;
}

TEST_P(KernelGrid, MatchesRefWithinDerivedBound) {
  const auto [isa, precision, q, g, orientation, offset] = GetParam();
  const CpuFeatures cpu = detect_cpu();
  if (!backend(isa).available(cpu)) GTEST_SKIP() << isa_name(isa) << " backend is not available here (CPU: " << cpu.summary() << ")";
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  ThreadPool one(1);
  ThreadPool two(2);
  for (auto [n, k] : grid_shapes(orientation, g)) {
    BcqConfig cfg{q, g == 0 ? (orientation == Orientation::kPerOC ? k : n) : g, orientation, offset};
    const BcqMatrix w = testing::random_bcq(n, k, cfg, rng);
    for (int64_t m : {1, 2, 3, 8, 17, 32}) {
      expect_matches_ref(w, isa, precision, m, m % 2 == 0 ? two : one, rng, seed);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

std::string grid_name(const ::testing::TestParamInfo<GridParam>& info) {
  const auto [isa, precision, q, g, orientation, offset] = info.param;
  std::string s = std::string(isa_name(isa)) + "_" + precision_name(precision) + "_q" + std::to_string(q) + "_g" +
                  (g == 0 ? std::string("full") : std::to_string(g)) + "_" +
                  (orientation == Orientation::kPerOC ? "oc" : "ic") + (offset ? "_offset" : "");
  return s;
}

INSTANTIATE_TEST_SUITE_P(Lut, KernelGrid,
                         ::testing::Combine(kGridIsas,
                                            ::testing::Values(Precision::kExact, Precision::kFast),
                                            ::testing::Values(1, 2, 3, 4), ::testing::Values(32, 128, 0),
                                            ::testing::Values(Orientation::kPerOC, Orientation::kPerIC),
                                            ::testing::Bool()),
                         grid_name);

// q = 5..8 take the same code paths with more planes; g = 64 and 256 complete the group sizes.
INSTANTIATE_TEST_SUITE_P(Wide, KernelGrid,
                         ::testing::Combine(kGridIsas,
                                            ::testing::Values(Precision::kExact, Precision::kFast),
                                            ::testing::Values(5, 8), ::testing::Values(64, 256),
                                            ::testing::Values(Orientation::kPerOC, Orientation::kPerIC),
                                            ::testing::Values(true)),
                         grid_name);

// Compressed scales (4, 6, 8-bit codes; the SIMD layouts keep and decode the codes):
// every backend against ref on the decoded matrix, same bounds.
class KernelGridCoded : public ::testing::TestWithParam<std::tuple<Isa, Precision, int, Orientation>> {};

TEST_P(KernelGridCoded, MatchesRefWithinDerivedBound) {
  const auto [isa, precision, q, orientation] = GetParam();
  const CpuFeatures cpu = detect_cpu();
  if (!backend(isa).available(cpu)) GTEST_SKIP() << isa_name(isa) << " backend is not available here (CPU: " << cpu.summary() << ")";
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  ThreadPool two(2);
  for (int bits : {4, 6, 8}) {
    for (bool offset : {false, true}) {
      const int64_t n = orientation == Orientation::kPerOC ? 33 : 320;  // per-IC: > 4 row blocks keep codes
      const BcqMatrix plain = testing::random_bcq(n, 512, BcqConfig{q, bits == 6 ? 32 : 64, orientation, offset}, rng);
      const BcqMatrix w = format::encode_scales(plain, bits).value();
      for (int64_t m : {1, 3, 8}) {
        expect_matches_ref(w, isa, precision, m, two, rng, seed);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

std::string coded_name(const ::testing::TestParamInfo<std::tuple<Isa, Precision, int, Orientation>>& info) {
  const auto [isa, precision, q, orientation] = info.param;
  return std::string(isa_name(isa)) + "_" + precision_name(precision) + "_q" + std::to_string(q) +
         (orientation == Orientation::kPerOC ? "_oc" : "_ic");
}

INSTANTIATE_TEST_SUITE_P(Lut, KernelGridCoded,
                         ::testing::Combine(kGridIsas, ::testing::Values(Precision::kExact, Precision::kFast),
                                            ::testing::Values(1, 2, 3, 4, 8),
                                            ::testing::Values(Orientation::kPerOC, Orientation::kPerIC)),
                         coded_name);

// Uniform scales (α_i = α_0·2^i, RTN's grids; fp16 and 8-bit codes): the scalar reference and
// avx2 fold the planes on the fast path (PackedMatrix::uniform), fewer fp32 roundings over the
// same int8 tables, so the same bound holds; avx512 runs them unfolded.
class KernelGridUniform : public ::testing::TestWithParam<std::tuple<Isa, Precision, int>> {};

TEST_P(KernelGridUniform, MatchesRefWithinDerivedBound) {
  const auto [isa, precision, q] = GetParam();
  const CpuFeatures cpu = detect_cpu();
  if (!backend(isa).available(cpu)) GTEST_SKIP() << isa_name(isa) << " backend is not available here (CPU: " << cpu.summary() << ")";
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  ThreadPool two(2);
  for (bool coded : {false, true}) {
    for (int g : {32, 64, 128, 256, 0}) {
      for (bool offset : {false, true}) {
        const int64_t k = g == 256 ? 512 : 384;
        const BcqConfig cfg{q, g == 0 ? k : g, Orientation::kPerOC, offset};
        const BcqMatrix w = coded ? testing::uniform_coded_bcq(33, k, cfg, rng) : testing::uniform_bcq(33, k, cfg, rng);
        ASSERT_TRUE(lut_uniform(w));
        for (int64_t m : {1, 5}) {
          expect_matches_ref(w, isa, precision, m, two, rng, seed);
          if (::testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

std::string uniform_name(const ::testing::TestParamInfo<std::tuple<Isa, Precision, int>>& info) {
  const auto [isa, precision, q] = info.param;
  return std::string(isa_name(isa)) + "_" + precision_name(precision) + "_q" + std::to_string(q);
}

INSTANTIATE_TEST_SUITE_P(Lut, KernelGridUniform,
                         ::testing::Combine(kGridIsas, ::testing::Values(Precision::kExact, Precision::kFast),
                                            ::testing::Values(2, 3, 4)),
                         uniform_name);

// The int8 partial sums of every backend equal the scalar LUT reference's exactly.
class Int8Partials : public ::testing::TestWithParam<std::tuple<Isa, Orientation>> {};

TEST_P(Int8Partials, EqualScalarReferenceExactly) {
  const auto [isa, orientation] = GetParam();
  const CpuFeatures cpu = detect_cpu();
  if (!backend(isa).available(cpu)) GTEST_SKIP() << isa_name(isa) << " backend is not available here (CPU: " << cpu.summary() << ")";
  ASSERT_NE(backend(isa).int8_partials, nullptr);
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  for (int q : {1, 2, 3, 4, 7}) {
    for (int g : {32, 64, 128, 256, 0}) {
      for (auto [n, k] : grid_shapes(orientation, g)) {
        BcqConfig cfg{q, g == 0 ? (orientation == Orientation::kPerOC ? k : n) : g, orientation, q % 2 == 1};
        const BcqMatrix w = testing::random_bcq(n, k, cfg, rng);
        SCOPED_TRACE(describe_case(w, isa, Precision::kFast, 1, 1, seed));
        const std::vector<float> x = testing::random_activations(1, k, rng);
        const int64_t nb = k / lut_block(w);
        std::vector<int32_t> got(static_cast<size_t>(n * q * nb), INT32_MIN);
        std::vector<int32_t> want(got.size(), INT32_MAX);
        const PackedMatrix pw = backend(isa).repack(w, Precision::kFast);
        const PackedMatrix ps = scalar_backend().repack(w, Precision::kFast);
        backend(isa).int8_partials(pw, x.data(), got.data());
        scalar_backend().int8_partials(ps, x.data(), want.data());
        for (size_t e = 0; e < got.size(); ++e) {
          const int64_t r = static_cast<int64_t>(e) / (q * nb);
          ASSERT_EQ(got[e], want[e]) << "partial sum of row " << r << ", plane " << (static_cast<int64_t>(e) / nb) % q
                                     << ", block " << static_cast<int64_t>(e) % nb;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Simd, Int8Partials,
                         ::testing::Combine(kSimdIsas,
                                            ::testing::Values(Orientation::kPerOC, Orientation::kPerIC)),
                         [](const auto& info) {
                           return std::string(isa_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) == Orientation::kPerOC ? "_oc" : "_ic");
                         });

// Canonical -> backend layout -> canonical is the identity for every backend and precision.
TEST(KernelRepack, RoundTripIsIdentity) {
  const CpuFeatures cpu = detect_cpu();
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed=" + std::to_string(seed));
  for (Isa isa : available_isas(cpu)) {
    for (Precision p : {Precision::kExact, Precision::kFast}) {
      for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
        for (int q : {1, 3, 4, 8}) {
          const int64_t n = o == Orientation::kPerOC ? 33 : 64;
          BcqConfig cfg{q, 32, o, q != 1};
          const BcqMatrix w = testing::random_bcq(n, 96, cfg, rng);
          const BcqMatrix back = backend(isa).unpack(backend(isa).repack(w, p));
          SCOPED_TRACE(std::string(isa_name(isa)) + " " + precision_name(p) + " " + format::describe(w));
          testing::expect_same_bcq(back, w);
        }
      }
    }
  }
}

// m beyond one backend call is tiled by BcqLinear::forward.
TEST(KernelLinear, LargeMIsTiled) {
  const CpuFeatures cpu = detect_cpu();
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  ThreadPool pool(2);
  const BcqMatrix w = testing::random_bcq(40, 128, BcqConfig{3, 64, Orientation::kPerOC, true}, rng);
  for (Isa isa : available_isas(cpu)) {
    // cuda rounds activations to 16 bits, outside the fp32 bound used here: cuda_test.cc checks
    // its tiling against its own bound.
    if (isa == Isa::kCuda) continue;
    for (int64_t m : {33, 70}) expect_matches_ref(w, isa, Precision::kExact, m, pool, rng, seed);
  }
}

TEST(KernelLinear, ShapesLutCannotTakeGiveClearErrors) {
  std::mt19937_64 rng(1);
  // g = k = 40: a valid matrix, but not a multiple of 32 for the LUT kernels.
  const BcqMatrix w = testing::random_bcq(8, 40, BcqConfig{2, 40, Orientation::kPerOC, false}, rng);
  for (Isa isa : available_isas(detect_cpu())) {
    auto lin = BcqLinear::create(w, isa, Precision::kFast);
    if (isa == Isa::kRef) {
      EXPECT_TRUE(lin.is_ok());
    } else {
      ASSERT_FALSE(lin.is_ok()) << isa_name(isa);
      EXPECT_NE(lin.status().message().find("multiple of 32"), std::string::npos) << lin.status().message();
    }
  }
  // A corrupt matrix (wrong buffer size) is caught once where matrices enter (the file reader,
  // the check before packing one built in memory), not again by the backends, which trust it.
  BcqMatrix bad = w;
  bad.alpha.pop_back();
  EXPECT_FALSE(format::validate_with_codes(bad).is_ok());
  // m = 0 is an error, not a silent no-op.
  auto lin = BcqLinear::create(w, Isa::kRef, Precision::kExact);
  ThreadPool pool(1);
  float x[40] = {};
  float y[8] = {};
  EXPECT_FALSE(lin->forward(x, 0, y, pool).is_ok());
}

TEST(KernelDispatch, SelectsOverrideAndRejectsUnknown) {
  const CpuFeatures cpu = detect_cpu();
  EXPECT_EQ(*select_isa(cpu, Isa::kRef), Isa::kRef);
  EXPECT_EQ(*select_isa(cpu, Isa::kScalar), Isa::kScalar);
  EXPECT_FALSE(parse_isa("sse9").is_ok());
  EXPECT_EQ(*parse_isa("avx2"), Isa::kAvx2);
  if (!backend(Isa::kAvx512).available(cpu)) {
    EXPECT_FALSE(select_isa(cpu, Isa::kAvx512).is_ok());
  }
  // Without an override (and without LUTQ_ISA) the best available backend wins.
  if (std::getenv("LUTQ_ISA") == nullptr) {
    EXPECT_EQ(*select_isa(cpu, std::nullopt), available_isas(cpu).front());
  }
}

}  // namespace
}  // namespace lutq::kernels
