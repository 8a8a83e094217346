// The int8 GEMM path (bcq_int8.h): the AVX-512 kernel equals the scalar spec bit for bit; the
// whole path stays within the bound derived from its two roundings against the exact BCQ product
// (the ref backend); the policy; BcqLinear's use of it. Inputs are fresh each run (seed printed).
//
// Bound, per output (t, r) (docs/kernels.md "The int8 GEMM path"): with x̂ = s_x·xq, ŵ = s_w·wq,
// |x − x̂| <= s_x/2 and |W − ŵ| <= s_w/2 per element, so
//   |x̂ŵ − xW| = |(x̂ − x)·ŵ + x·(ŵ − W)| <= (s_x/2)·(|W| + s_w/2) + |x|·s_w/2
// summed over c, plus the fp32 roundings (levels, scales, the per-group fma chain): γ_N·M with
// M = Σ_c (Σ_i |α_i| + |z|)·|x_c|, taken twice with N = k + q + 16 + 4·groups for the slack.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/fp16.h"
#include "kernels/int8/bcq_int8.h"
#include "kernels/linear.h"
#include "support/random_bcq.h"

namespace lutq::kernels {
namespace {

using format::BcqConfig;
using format::BcqMatrix;
using format::Orientation;

struct Shape {
  int64_t n, k;
};

std::string describe(const BcqMatrix& w, int64_t m, uint64_t seed) {
  std::ostringstream os;
  os << "n=" << w.n << " k=" << w.k << " q=" << w.cfg.q << " g=" << w.cfg.g << " offset=" << w.cfg.has_offset
     << " m=" << m << " seed=" << seed << " (LUTQ_TEST_SEED reproduces)";
  return os.str();
}

// The derived bound for element (t, r) against the exact product.
double int8_bound(const BcqMatrix& w, const BcqInt8Packed& p, const QuantizedActs& xa, const float* x, int64_t t,
                  int64_t r) {
  const double u = std::ldexp(1.0, -24);
  const double nn = static_cast<double>(w.k + w.cfg.q + 16 + 4 * p.groups);
  const double gamma = nn * u / (1 - nn * u);
  std::vector<double> row(static_cast<size_t>(w.k));
  format::dequantize_row(w, r, row.data());
  double e = 0.0, mm = 0.0;
  for (int64_t c = 0; c < w.k; ++c) {
    const int64_t j = c / w.cfg.g, set = w.scale_set(r, c);
    const double sw = p.ws[static_cast<size_t>(((r / kInt8TileRows) * p.groups + j) * kInt8TileRows + r % kInt8TileRows)];
    const double sx = xa.sx[static_cast<size_t>(t * p.groups + j)];
    const double xc = std::fabs(static_cast<double>(x[t * w.k + c]));
    e += xc * sw / 2 + std::fabs(row[static_cast<size_t>(c)]) * sx / 2 + sw * sx / 4;
    double a = w.cfg.has_offset ? std::fabs(fp16_to_fp32(w.offset[static_cast<size_t>(set)])) : 0.0;
    for (int i = 0; i < w.cfg.q; ++i) a += std::fabs(fp16_to_fp32(w.alpha[static_cast<size_t>(set * w.cfg.q + i)]));
    mm += a * xc;
  }
  return e + 2 * gamma * mm;
}

const std::vector<Shape>& shapes_for(int64_t g) {
  static const std::vector<Shape> s32 = {{1, 32}, {17, 96}, {33, 64}, {100, 160}};
  static const std::vector<Shape> s64 = {{1, 64}, {17, 192}, {33, 128}, {100, 320}};
  static const std::vector<Shape> s128 = {{1, 128}, {17, 384}, {33, 256}, {100, 640}};
  return g == 32 ? s32 : g == 64 ? s64 : s128;
}

using KernelFn = std::function<void(const BcqInt8Packed&, const QuantizedActs&, float*, ThreadPool&)>;

// Every output of `kernel` equals the scalar spec's bit for bit (memcmp), on 1 and 2 threads.
void expect_equals_spec(KernelFn kernel, const std::vector<int64_t>& groups, const std::vector<int64_t>& ms,
                        Int8Codes codes = Int8Codes::kQuads) {
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (int q = 1; q <= 4; ++q) {
      for (int64_t g : groups) {
        for (bool off : {false, true}) {
          for (const Shape& s : shapes_for(g)) {
            const BcqMatrix w = testing::random_bcq(s.n, s.k, BcqConfig{q, g, Orientation::kPerOC, off}, rng);
            const BcqInt8Packed p = pack_bcq_int8(w, codes);
            for (int64_t m : ms) {
              const std::vector<float> x = testing::random_activations(m, s.k, rng);
              const QuantizedActs xa = quantize_acts(x.data(), m, s.k, g);
              std::vector<float> want(static_cast<size_t>(m * s.n)), got(want.size(), std::nanf(""));
              bcq_int8_gemm_ref(p, xa, want.data());
              kernel(p, xa, got.data(), pool);
              size_t bad = 0, worst = 0;
              for (size_t e = 0; e < got.size(); ++e) {
                if (std::memcmp(&got[e], &want[e], 4) == 0) continue;
                ++bad;
                if (std::fabs(got[e] - want[e]) >= std::fabs(got[worst] - want[worst]) || std::isnan(got[e])) worst = e;
              }
              ASSERT_EQ(bad, 0u) << describe(w, m, seed) << " threads=" << threads << ": worst t=" << worst / s.n
                                 << " r=" << worst % s.n << " got " << got[worst] << " want " << want[worst];
            }
          }
        }
      }
    }
  }
}

TEST(BcqInt8Gemm, Avx512EqualsScalarSpecExactly) {
  if (!bcq_int8_avx512_available(detect_cpu())) GTEST_SKIP() << "CPU lacks AVX-512 VNNI + VBMI";
  expect_equals_spec(&bcq_int8_gemm_avx512, {32, 64, 128}, {1, 2, 3, 7, 9, 17, 33});
}

// AMX: activation blocks of 16 rows in pairs with every tail (1, 15, 16, 17, 31, 32, 33 rows
// and past a pair), odd tile counts (n = 1, 17, 33, 100), one and several 64-column steps per
// group, q = 1..4 (2-bit and 4-bit row codes).
TEST(BcqInt8Gemm, AmxEqualsScalarSpecExactly) {
  if (!bcq_int8_amx_available(detect_cpu())) GTEST_SKIP() << "CPU or OS lacks AMX-INT8 (or AVX-512 VNNI + VBMI)";
  expect_equals_spec(&bcq_int8_gemm_amx, {64, 128}, {1, 2, 7, 8, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65}, Int8Codes::kRows);
}

// The scalar spec reads either code layout alike.
TEST(BcqInt8Gemm, SpecReadsBothCodeLayouts) {
  std::mt19937_64 rng(testing::test_seed());
  for (int q = 1; q <= 4; ++q) {
    const BcqMatrix w = testing::random_bcq(20, 256, BcqConfig{q, 128, Orientation::kPerOC, q % 2 == 0}, rng);
    const BcqInt8Packed quads = pack_bcq_int8(w, Int8Codes::kQuads), rows = pack_bcq_int8(w, Int8Codes::kRows);
    EXPECT_FALSE(rows.has_quads());
    EXPECT_EQ(quads.row_codes.size(), 0u);
    for (int64_t r = 0; r < w.n; ++r) {
      for (int64_t c = 0; c < w.k; ++c) ASSERT_EQ(quads.level(r, c), rows.level(r, c)) << "q=" << q << " r=" << r << " c=" << c;
    }
  }
}

TEST(BcqInt8Gemm, Avx2EqualsScalarSpecExactly) {
  if (!bcq_int8_avx2_available(detect_cpu())) GTEST_SKIP() << "CPU lacks AVX2";
  // m crosses the kernel's passes of 4 activation rows and its chunks of 64.
  expect_equals_spec(&bcq_int8_gemm_avx2, {64, 128}, {1, 2, 3, 4, 5, 7, 8, 9, 17, 33, 63, 64, 65, 70}, Int8Codes::kRows);
}

using QuantizeFn = QuantizedActs (*)(const float*, int64_t, int64_t, int64_t);

// A SIMD activation quantizer equals the spec field for field, non-finite and all-zero groups and
// groups that are not a multiple of 16 long included.
void expect_acts_equal_spec(QuantizeFn quantize) {
  std::mt19937_64 rng(testing::test_seed());
  for (const auto& [k, g] : std::vector<std::pair<int64_t, int64_t>>{{256, 32}, {384, 128}, {100, 100}, {120, 20}, {192, 24}}) {
    for (int64_t m : {1, 3, 17}) {
      std::vector<float> x = testing::random_activations(m, k, rng);
      x[static_cast<size_t>(g / 2)] = std::numeric_limits<float>::quiet_NaN();  // row 0, group 0
      if (m > 1) std::fill(x.begin() + k, x.begin() + k + g, 0.0f);  // row 1, group 0
      if (m > 2) x[static_cast<size_t>(2 * k + g - 1)] = -std::numeric_limits<float>::infinity();
      if (m > 2 && k >= 2 * g) x[static_cast<size_t>(2 * k + 2 * g - 1)] = std::numeric_limits<float>::infinity();
      const QuantizedActs want = quantize_acts(x.data(), m, k, g), got = quantize(x.data(), m, k, g);
      EXPECT_EQ(got.xq, want.xq) << "k=" << k << " g=" << g << " m=" << m;
      EXPECT_EQ(got.corr, want.corr) << "k=" << k << " g=" << g << " m=" << m;
      ASSERT_EQ(got.sx.size(), want.sx.size());
      EXPECT_EQ(0, std::memcmp(got.sx.data(), want.sx.data(), got.sx.size() * 4)) << "k=" << k << " g=" << g;
    }
  }
}

TEST(BcqInt8Gemm, Avx512ActivationsEqualTheSpec) {
  if (!bcq_int8_avx512_available(detect_cpu())) GTEST_SKIP() << "CPU lacks AVX-512 VNNI + VBMI";
  expect_acts_equal_spec(&quantize_acts_avx512);
}

TEST(BcqInt8Gemm, Avx2ActivationsEqualTheSpec) {
  if (!bcq_int8_avx2_available(detect_cpu())) GTEST_SKIP() << "CPU lacks AVX2";
  expect_acts_equal_spec(&quantize_acts_avx2);
}

TEST(BcqInt8Gemm, KernelChoice) {
  std::mt19937_64 rng(testing::test_seed());
  const CpuFeatures cpu = detect_cpu();
  const BcqMatrix w64 = testing::random_bcq(20, 128, BcqConfig{3, 64, Orientation::kPerOC, false}, rng);
  const BcqInt8Packed g64 = pack_bcq_int8(w64), g64rows = pack_bcq_int8(w64, Int8Codes::kRows);
  const BcqInt8Packed g32 = pack_bcq_int8(testing::random_bcq(20, 128, BcqConfig{3, 32, Orientation::kPerOC, false}, rng));
  EXPECT_TRUE(bcq_int8_amx_supported(g64.g));
  EXPECT_FALSE(bcq_int8_amx_supported(g32.g));
  const Int8Kernel simd = bcq_int8_avx512_available(cpu) ? Int8Kernel::kAvx512 : Int8Kernel::kRef;
  EXPECT_EQ(best_int8_kernel(cpu, g32), simd);
  EXPECT_EQ(best_int8_kernel(cpu, g64), simd);  // quads only: the AVX-512 kernel
  // Rows: AMX where allowed, else the AVX2 kernel.
  const Int8Kernel rows_simd = bcq_int8_avx2_available(cpu) ? Int8Kernel::kAvx2 : Int8Kernel::kRef;
  EXPECT_EQ(best_int8_kernel(cpu, g64rows, false), rows_simd);
  EXPECT_EQ(best_int8_kernel(cpu, g64rows), bcq_int8_amx_available(cpu) ? Int8Kernel::kAmx : rows_simd);
  EXPECT_TRUE(bcq_int8_avx2_supported(64));
  EXPECT_FALSE(bcq_int8_avx2_supported(32));
  // Through bcq_int8_gemm, every choice gives the spec's outputs.
  ThreadPool pool(2);
  for (int64_t m : {int64_t{1}, int64_t{8}, int64_t{16}, int64_t{40}}) {
    const std::vector<float> x = testing::random_activations(m, 128, rng);
    for (const BcqInt8Packed* p : {&g64, &g64rows}) {
      std::vector<float> want(static_cast<size_t>(m * 20)), got(want.size());
      bcq_int8_gemm(*p, x.data(), m, want.data(), pool, Int8Kernel::kRef);
      bcq_int8_gemm(*p, x.data(), m, got.data(), pool, best_int8_kernel(cpu, *p));
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * 4)) << "m=" << m << " rows " << !p->has_quads();
    }
  }
}

void check_against_exact(const BcqMatrix& w, int64_t m, std::mt19937_64& rng, uint64_t seed, ThreadPool& pool) {
  const std::vector<float> x = testing::random_activations(m, w.k, rng);
  Result<BcqLinear> ref = BcqLinear::create(w, Isa::kRef, Precision::kExact);
  ASSERT_TRUE(ref) << ref.status().message();
  std::vector<float> want(static_cast<size_t>(m * w.n));
  ASSERT_TRUE(ref->forward(x.data(), m, want.data(), pool));
  const BcqInt8Packed p = pack_bcq_int8(w);
  std::vector<float> got(want.size(), std::nanf(""));
  bcq_int8_gemm(p, x.data(), m, got.data(), pool, best_int8_kernel(detect_cpu(), p));
  const QuantizedActs xa = quantize_acts(x.data(), m, w.k, w.cfg.g);
  double worst_ratio = 0.0;
  int64_t wt = 0, wr = 0;
  double wbound = 0.0;
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t r = 0; r < w.n; ++r) {
      const double bound = int8_bound(w, p, xa, x.data(), t, r);
      const double err = std::fabs(static_cast<double>(got[static_cast<size_t>(t * w.n + r)]) - want[static_cast<size_t>(t * w.n + r)]);
      const double ratio = std::isnan(err) ? std::numeric_limits<double>::infinity() : err / bound;
      if (ratio > worst_ratio) {
        worst_ratio = ratio;
        wt = t;
        wr = r;
        wbound = bound;
      }
    }
  }
  EXPECT_LE(worst_ratio, 1.0) << describe(w, m, seed) << ": worst t=" << wt << " r=" << wr << " got "
                              << got[static_cast<size_t>(wt * w.n + wr)] << " want "
                              << want[static_cast<size_t>(wt * w.n + wr)] << " bound " << wbound;
}

TEST(BcqInt8Gemm, WithinDerivedBoundOfExactProduct) {
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  ThreadPool pool(2);
  for (int q = 1; q <= 4; ++q) {
    for (int64_t g : {32, 64, 128}) {
      for (bool off : {false, true}) {
        for (const Shape& s : shapes_for(g)) {
          const BcqMatrix w = testing::random_bcq(s.n, s.k, BcqConfig{q, g, Orientation::kPerOC, off}, rng);
          for (int64_t m : {2, 5, 33}) check_against_exact(w, m, rng, seed, pool);
        }
      }
    }
  }
  // The full extent as the group (k = g = 100: not a multiple of 32).
  check_against_exact(testing::random_bcq(19, 100, BcqConfig{3, 100, Orientation::kPerOC, true}, rng), 3, rng, seed,
                      pool);
}

TEST(BcqInt8Gemm, NonFiniteActivationGivesNan) {
  std::mt19937_64 rng(testing::test_seed());
  const BcqMatrix w = testing::random_bcq(20, 64, BcqConfig{2, 32, Orientation::kPerOC, false}, rng);
  const BcqInt8Packed p = pack_bcq_int8(w);
  std::vector<float> x = testing::random_activations(2, 64, rng);
  x[70] = std::numeric_limits<float>::infinity();
  std::vector<float> y(40, 0.0f);
  ThreadPool pool(1);
  bcq_int8_gemm(p, x.data(), 2, y.data(), pool, best_int8_kernel(detect_cpu(), p));
  for (int64_t r = 0; r < 20; ++r) {
    EXPECT_FALSE(std::isnan(y[static_cast<size_t>(r)]));
    EXPECT_TRUE(std::isnan(y[static_cast<size_t>(20 + r)]));
  }
}

TEST(BcqInt8Gemm, Policy) {
  const auto oc = Orientation::kPerOC;
  const auto fast = Precision::kFast;
  EXPECT_EQ(choose_path(1, 4096, 4096, 4, 128, oc, Isa::kAvx512, fast), GemmPath::kLut);  // decode
  for (int q : {3, 4}) {
    EXPECT_EQ(choose_path(32, 4096, 4096, q, 128, oc, Isa::kAvx512, fast), GemmPath::kInt8Gemm) << q;
    EXPECT_EQ(choose_path(128, 576, 576, q, 64, oc, Isa::kAvx512, fast), GemmPath::kInt8Gemm) << q;
  }
  // The measured thresholds (Zen 4 and Zen 5): q = 3 and 4 from m = 32, q <= 2 never.
  for (int q : {3, 4}) {
    EXPECT_EQ(choose_path(8, 4096, 4096, q, 128, oc, Isa::kAvx512, fast), GemmPath::kLut) << q;
    EXPECT_EQ(choose_path(31, 4096, 4096, q, 128, oc, Isa::kAvx512, fast), GemmPath::kLut) << q;
    EXPECT_EQ(choose_path(32, 4096, 4096, q, 128, oc, Isa::kAvx512, fast), GemmPath::kInt8Gemm) << q;
  }
  for (int q : {1, 2}) EXPECT_EQ(choose_path(512, 4096, 4096, q, 128, oc, Isa::kAvx512, fast), GemmPath::kLut) << q;
  // With AMX (groups a multiple of 64 only): q = 1 from m = 16, q = 2 from 8, q = 3 from 6, q = 4
  // from 5.
  const int64_t amx_from[5] = {0, 16, 8, 6, 5};
  for (int q = 1; q <= 4; ++q) {
    const int64_t m0 = amx_from[q];
    EXPECT_EQ(choose_path(m0 - 1, 4096, 4096, q, 128, oc, Isa::kAvx512, fast, true), GemmPath::kLut) << q;
    EXPECT_EQ(choose_path(m0, 4096, 4096, q, 128, oc, Isa::kAvx512, fast, true), GemmPath::kInt8Gemm) << q;
    EXPECT_EQ(choose_path(512, 4096, 4096, q, 64, oc, Isa::kAvx512, fast, true), GemmPath::kInt8Gemm) << q;
    // g = 32: no AMX kernel, the AVX-512 thresholds.
    EXPECT_EQ(choose_path(m0, 4096, 4096, q, 32, oc, Isa::kAvx512, fast, true), GemmPath::kLut) << q;
  }
  // Never: exact precision, per-IC, q > 4, another ISA.
  EXPECT_EQ(choose_path(32, 4096, 4096, 4, 128, oc, Isa::kAvx512, Precision::kExact), GemmPath::kLut);
  EXPECT_EQ(choose_path(32, 4096, 4096, 4, 128, Orientation::kPerIC, Isa::kAvx512, fast), GemmPath::kLut);
  EXPECT_EQ(choose_path(32, 4096, 4096, 5, 128, oc, Isa::kAvx512, fast), GemmPath::kLut);
  for (Isa isa : {Isa::kRef, Isa::kScalar, Isa::kAvx2, Isa::kCuda}) {
    EXPECT_EQ(choose_path(32, 4096, 4096, 4, 128, oc, isa, fast), GemmPath::kLut) << isa_name(isa);
  }
  // avx2: uniform grids only (the nibble copy), q = 4 from m = 2, q = 3 from m = 3; never q <= 2,
  // never m = 1, never exact precision.
  for (int q = 1; q <= 4; ++q) {
    const int64_t from = q == 4 ? 2 : q == 3 ? 3 : 0;
    const GemmPath big = from != 0 ? GemmPath::kInt8Gemm : GemmPath::kLut;
    EXPECT_EQ(choose_path(1, 4096, 4096, q, 128, oc, Isa::kAvx2, fast, false, true), GemmPath::kLut) << q;
    if (from != 0) {
      EXPECT_EQ(choose_path(from - 1, 4096, 4096, q, 128, oc, Isa::kAvx2, fast, false, true), GemmPath::kLut) << q;
      EXPECT_EQ(choose_path(from, 4096, 4096, q, 128, oc, Isa::kAvx2, fast, false, true), big) << q;
    }
    EXPECT_EQ(choose_path(512, 4096, 4096, q, 32, oc, Isa::kAvx2, fast, false, true), big) << q;
  }
  EXPECT_EQ(choose_path(512, 4096, 4096, 4, 128, oc, Isa::kAvx2, Precision::kExact, false, true), GemmPath::kLut);
  EXPECT_EQ(choose_path(512, 4096, 4096, 4, 128, oc, Isa::kScalar, fast, false, true), GemmPath::kLut);
}

TEST(BcqInt8Gemm, LinearTakesThePolicyPath) {
  if (!bcq_int8_avx512_available(detect_cpu())) GTEST_SKIP() << "CPU lacks AVX-512 VNNI + VBMI";
  const Isa isa = Isa::kAvx512;
  std::mt19937_64 rng(testing::test_seed());
  const BcqMatrix w = testing::random_bcq(40, 256, BcqConfig{4, 64, Orientation::kPerOC, true}, rng);
  ThreadPool pool(2);
  // Without a request, LUTQ_GEMM_PATH decides and unset means the LUT path (the int8 copy is
  // opt-in); kAuto asks the policy.
  if (std::getenv("LUTQ_GEMM_PATH") == nullptr) {
    Result<BcqLinear> plain = BcqLinear::create(w, isa, Precision::kFast, std::nullopt);
    ASSERT_TRUE(plain);
    EXPECT_EQ(plain->prefill_copy_bytes(), 0);
    EXPECT_EQ(plain->path_for(40), GemmPath::kLut);
  }
  Result<BcqLinear> lin = BcqLinear::create(w, isa, Precision::kFast, GemmPath::kAuto);
  ASSERT_TRUE(lin);
  EXPECT_EQ(lin->path_for(1), GemmPath::kLut);
  EXPECT_EQ(lin->path_for(40), GemmPath::kInt8Gemm);
  const std::vector<float> x = testing::random_activations(40, 256, rng);
  std::vector<float> y(40 * 40), want(40 * 40);
  ASSERT_TRUE(lin->forward(x.data(), 40, y.data(), pool));
  bcq_int8_gemm(pack_bcq_int8(w), x.data(), 40, want.data(), pool, Int8Kernel::kRef);
  EXPECT_EQ(0, std::memcmp(y.data(), want.data(), y.size() * 4));
  // exact precision, per-IC and a forced LUT path never pack or take the int8 path.
  Result<BcqLinear> exact = BcqLinear::create(w, isa, Precision::kExact, GemmPath::kInt8Gemm);
  ASSERT_TRUE(exact);
  EXPECT_EQ(exact->prefill_copy_bytes(), 0);
  EXPECT_EQ(exact->path_for(40), GemmPath::kLut);
  Result<BcqLinear> lut = BcqLinear::create(w, isa, Precision::kFast, GemmPath::kLut);
  ASSERT_TRUE(lut);
  EXPECT_EQ(lut->prefill_copy_bytes(), 0);
  const BcqMatrix ic = testing::random_bcq(64, 256, BcqConfig{4, 32, Orientation::kPerIC, false}, rng);
  Result<BcqLinear> per_ic = BcqLinear::create(ic, isa, Precision::kFast, GemmPath::kInt8Gemm);
  ASSERT_TRUE(per_ic);
  EXPECT_EQ(per_ic->path_for(40), GemmPath::kLut);
  EXPECT_FALSE(bcq_int8_supported(testing::random_bcq(3, 102, BcqConfig{2, 102, Orientation::kPerOC, false}, rng)));
}

// avx2: the policy never takes the int8 path (slower than the LUT on Zen 3); forced, the
// matrix is packed with rows and runs the AVX2 kernel, equal to the spec.
TEST(BcqInt8Gemm, LinearOnAvx2TakesInt8OnlyWhenForced) {
  if (!bcq_int8_avx2_available(detect_cpu())) GTEST_SKIP() << "CPU lacks AVX2";
  std::mt19937_64 rng(testing::test_seed());
  const BcqMatrix w = testing::random_bcq(40, 256, BcqConfig{4, 64, Orientation::kPerOC, true}, rng);
  Result<BcqLinear> autop = BcqLinear::create(w, Isa::kAvx2, Precision::kFast, GemmPath::kAuto);
  ASSERT_TRUE(autop);
  EXPECT_EQ(autop->prefill_copy_bytes(), 0);
  EXPECT_EQ(autop->path_for(512), GemmPath::kLut);
  Result<BcqLinear> forced = BcqLinear::create(w, Isa::kAvx2, Precision::kFast, GemmPath::kInt8Gemm);
  ASSERT_TRUE(forced);
  EXPECT_GT(forced->prefill_copy_bytes(), 0);
  EXPECT_EQ(forced->path_for(3), GemmPath::kInt8Gemm);
  ThreadPool pool(2);
  const std::vector<float> x = testing::random_activations(40, 256, rng);
  std::vector<float> y(40 * 40), want(40 * 40);
  ASSERT_TRUE(forced->forward(x.data(), 40, y.data(), pool));
  bcq_int8_gemm(pack_bcq_int8(w), x.data(), 40, want.data(), pool, Int8Kernel::kRef);
  EXPECT_EQ(0, std::memcmp(y.data(), want.data(), y.size() * 4));
  // Groups that are not a multiple of 64 have no row layout: never packed on avx2.
  const BcqMatrix w32 = testing::random_bcq(40, 256, BcqConfig{4, 32, Orientation::kPerOC, true}, rng);
  Result<BcqLinear> g32 = BcqLinear::create(w32, Isa::kAvx2, Precision::kFast, GemmPath::kInt8Gemm);
  ASSERT_TRUE(g32);
  EXPECT_EQ(g32->prefill_copy_bytes(), 0);
  EXPECT_EQ(g32->path_for(512), GemmPath::kLut);
}

}  // namespace
}  // namespace lutq::kernels
