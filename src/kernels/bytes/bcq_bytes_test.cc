// The byte-code path (bcq_bytes.h): detection of uniform grids, the pack/unpack round trip, the
// AVX-512 and AVX2 kernels equal to the scalar spec bit for bit, the bound against the exact BCQ
// product, the policy and BcqLinear's use of it. Inputs are fresh each run (seed printed).
//
// Bound, per output (t, r) (docs/kernels.md "The byte-code path"): with x̂ = s_x·xq,
// |x − x̂| <= s_x/2 per element and the weights exact (codes and A = 2α_0 exact, B rounded once),
//   |y − x·Wᵀ| <= Σ_c |W_c|·s_x(c)/2 + γ_N·M,  M = Σ_c (3·Σ_i |α_i| + |z|)·(|x_c| + s_x(c)/2),
// γ_N = N·u/(1 − N·u), u = 2^-24, N = groups + 8 (B, float(I), the product, the two fmas per
// group, the fp32 scales of the activations), taken twice for slack.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "kernels/bytes/bcq_bytes.h"
#include "kernels/linear.h"
#include "support/random_bcq.h"

namespace lutq::kernels {
namespace {

using format::BcqConfig;
using format::BcqMatrix;
using format::Orientation;

struct Shape {
  int64_t n, k, g;
};

// A uniform grid as RTN stores it: random codes, α_i = α_0·2^i (fp16, exact), offsets z.
BcqMatrix random_uniform(int64_t n, int64_t k, int q, int64_t g, std::mt19937_64& rng) {
  BcqMatrix w = testing::random_bcq(n, k, BcqConfig{q, g, Orientation::kPerOC, true}, rng);
  std::uniform_real_distribution<float> a(1e-3f, 0.05f);
  for (size_t s = 0; s < w.offset.size(); ++s) {
    const float a0 = round_to_fp16(a(rng));
    uint16_t* alpha = w.alpha.data() + s * static_cast<size_t>(q);
    for (int i = 0; i < q; ++i) alpha[i] = fp32_to_fp16(std::ldexp(a0, i));
  }
  return w;
}

std::string describe(const BcqMatrix& w, int64_t m, uint64_t seed) {
  std::ostringstream os;
  os << "n=" << w.n << " k=" << w.k << " q=" << w.cfg.q << " g=" << w.cfg.g << " m=" << m << " seed=" << seed
     << " (LUTQ_TEST_SEED reproduces)";
  return os.str();
}

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {{1, 32, 32},   {17, 96, 32},  {33, 192, 64}, {100, 128, 64},
                                       {16, 384, 128}, {47, 256, 128}, {5, 96, 96},  {31, 160, 160}};
  return s;
}

using Kernel = void (*)(const BcqBytesPacked&, const QuantizedActs&, float*, ThreadPool&);

void expect_kernel_equals_spec(Kernel kernel, int q_from) {
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (int q = q_from; q <= 8; ++q) {
      for (const Shape& s : shapes()) {
        const BcqMatrix w = random_uniform(s.n, s.k, q, s.g, rng);
        const BcqBytesPacked p = pack_bcq_bytes(w);
        for (int64_t m : {1, 2, 3, 5, 8, 9, 33}) {
          const std::vector<float> x = testing::random_activations(m, s.k, rng);
          const QuantizedActs xa = quantize_acts(x.data(), m, s.k, s.g);
          std::vector<float> want(static_cast<size_t>(m * s.n)), got(want.size(), std::nanf(""));
          bcq_bytes_gemm_ref(p, xa, want.data());
          kernel(p, xa, got.data(), pool);
          size_t bad = 0, worst = 0;
          for (size_t e = 0; e < got.size(); ++e) {
            if (std::memcmp(&got[e], &want[e], 4) == 0) continue;
            if (bad++ == 0 || std::fabs(got[e] - want[e]) >= std::fabs(got[worst] - want[worst])) worst = e;
          }
          ASSERT_EQ(bad, 0u) << describe(w, m, seed) << " threads=" << threads << ": worst t=" << worst / s.n
                             << " r=" << worst % s.n << " got " << got[worst] << " want " << want[worst];
        }
      }
    }
  }
}

TEST(BcqBytes, Avx512EqualsScalarSpecExactly) {
  if (byte_kernel_for(Isa::kAvx512, Precision::kFast, detect_cpu()) != ByteKernel::kAvx512) {
    GTEST_SKIP() << "CPU lacks AVX-512 VNNI";
  }
  expect_kernel_equals_spec(bcq_bytes_gemm_avx512, 5);
}

TEST(BcqBytes, Avx2EqualsScalarSpecExactly) {
  if (!detect_cpu().avx2) GTEST_SKIP() << "CPU lacks AVX2";
  expect_kernel_equals_spec(bcq_bytes_gemm_avx2, 1);  // q <= 4: nibbles, vpmaddubsw
}

TEST(BcqBytes, DetectsExactlyUniformGridsOnly) {
  std::mt19937_64 rng(testing::test_seed());
  for (int q = 5; q <= 8; ++q) EXPECT_TRUE(bcq_bytes_uniform(random_uniform(17, 128, q, 64, rng))) << "q=" << q;
  EXPECT_FALSE(bcq_bytes_uniform(random_uniform(17, 128, 4, 64, rng))) << "q = 4 stays on the LUT";
  for (int q = 1; q <= 8; ++q) EXPECT_TRUE(bcq_uniform_grid(random_uniform(17, 128, q, 64, rng))) << "q=" << q;
  BcqMatrix w = random_uniform(17, 128, 8, 64, rng);
  w.alpha[7 * 8 + 3] = static_cast<uint16_t>(w.alpha[7 * 8 + 3] + 1);  // one scale one ulp off
  EXPECT_FALSE(bcq_bytes_uniform(w));
  BcqMatrix no_offset = testing::random_bcq(17, 128, BcqConfig{6, 64, Orientation::kPerOC, false}, rng);
  EXPECT_FALSE(bcq_bytes_uniform(no_offset));
  EXPECT_FALSE(bcq_bytes_uniform(testing::random_bcq(17, 128, BcqConfig{6, 64, Orientation::kPerOC, true}, rng)))
      << "random (non-uniform) scales";
  EXPECT_FALSE(bcq_bytes_uniform(testing::random_bcq(64, 128, BcqConfig{6, 32, Orientation::kPerIC, true}, rng)));
}

TEST(BcqBytes, UnpackRoundTripsToTheCanonicalMatrix) {
  std::mt19937_64 rng(testing::test_seed());
  for (int q = 5; q <= 8; ++q) {
    for (const Shape& s : shapes()) {
      const BcqMatrix w = random_uniform(s.n, s.k, q, s.g, rng);
      testing::expect_same_bcq(unpack_bcq_bytes(pack_bcq_bytes(w)), w);
    }
  }
}

double exact_dot(const BcqMatrix& w, const float* x, int64_t r, std::vector<double>& row) {
  format::dequantize_row(w, r, row.data());
  double s = 0.0;
  for (int64_t c = 0; c < w.k; ++c) s += row[static_cast<size_t>(c)] * static_cast<double>(x[c]);
  return s;
}

double byte_bound(const BcqMatrix& w, const QuantizedActs& xa, const float* x, int64_t t, int64_t r,
                  const std::vector<double>& row) {
  const double u = std::ldexp(1.0, -24);
  const double nn = static_cast<double>(xa.groups + 8);
  const double gamma = nn * u / (1 - nn * u);
  double e = 0.0, mm = 0.0;
  for (int64_t c = 0; c < w.k; ++c) {
    const int64_t set = w.scale_set(r, c);
    const double sx = xa.sx[static_cast<size_t>(t * xa.groups + c / w.cfg.g)];
    e += std::fabs(row[static_cast<size_t>(c)]) * sx / 2;
    double a = 0.0;
    for (int i = 0; i < w.cfg.q; ++i) a += std::fabs(fp16_to_fp32(w.alpha[static_cast<size_t>(set * w.cfg.q + i)]));
    mm += (3 * a + std::fabs(fp16_to_fp32(w.offset[static_cast<size_t>(set)]))) * (std::fabs(x[c]) + sx / 2);
  }
  return e + 2 * gamma * mm;
}

TEST(BcqBytes, WithinDerivedBoundOfExactProduct) {
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  ThreadPool pool(2);
  const ByteKernel kernel = byte_kernel_for(Isa::kAvx512, Precision::kFast, detect_cpu());
  for (int q : {2, 4, 5, 6, 8}) {
    for (const Shape& s : shapes()) {
      const BcqMatrix w = random_uniform(s.n, s.k, q, s.g, rng);
      const BcqBytesPacked p = pack_bcq_bytes(w);
      const int64_t m = 3;
      const std::vector<float> x = testing::random_activations(m, s.k, rng);
      std::vector<float> got(static_cast<size_t>(m * s.n));
      bcq_bytes_gemm(p, x.data(), m, got.data(), pool, kernel);
      const QuantizedActs xa = quantize_acts(x.data(), m, s.k, s.g);
      std::vector<double> row(static_cast<size_t>(s.k));
      for (int64_t t = 0; t < m; ++t) {
        for (int64_t r = 0; r < s.n; ++r) {
          const double exact = exact_dot(w, x.data() + t * s.k, r, row);
          const double bound = byte_bound(w, xa, x.data(), t, r, row);
          const double err = std::fabs(static_cast<double>(got[static_cast<size_t>(t * s.n + r)]) - exact);
          ASSERT_LE(err, bound) << describe(w, m, seed) << ": worst element t=" << t << " r=" << r << " got "
                                << got[static_cast<size_t>(t * s.n + r)] << " exact " << exact;
        }
      }
    }
  }
}

TEST(BcqBytes, PolicyOnlyFastOnSimdBackends) {
  CpuFeatures all;
  all.avx2 = all.avx512 = all.avx512_vnni = all.avx512_vbmi = true;
  EXPECT_EQ(byte_kernel_for(Isa::kAvx512, Precision::kFast, all), ByteKernel::kAvx512);
  EXPECT_EQ(byte_kernel_for(Isa::kAvx2, Precision::kFast, all), ByteKernel::kAvx2);
  for (Isa isa : {Isa::kRef, Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kCuda}) {
    EXPECT_EQ(byte_kernel_for(isa, Precision::kExact, all), ByteKernel::kNone) << isa_name(isa);
  }
  for (Isa isa : {Isa::kRef, Isa::kScalar, Isa::kCuda}) {
    EXPECT_EQ(byte_kernel_for(isa, Precision::kFast, all), ByteKernel::kNone) << isa_name(isa);
  }
  CpuFeatures no_vnni = all;
  no_vnni.avx512_vnni = false;
  EXPECT_EQ(byte_kernel_for(Isa::kAvx512, Precision::kFast, no_vnni), ByteKernel::kNone);
  CpuFeatures none;
  EXPECT_EQ(byte_kernel_for(Isa::kAvx2, Precision::kFast, none), ByteKernel::kNone);
  std::mt19937_64 rng(testing::test_seed());
  EXPECT_TRUE(use_byte_path(random_uniform(17, 128, 8, 64, rng), Isa::kAvx512, Precision::kFast, all));
  EXPECT_FALSE(use_byte_path(random_uniform(17, 128, 8, 64, rng), Isa::kAvx512, Precision::kExact, all));
  EXPECT_FALSE(use_byte_path(random_uniform(17, 128, 4, 64, rng), Isa::kAvx512, Precision::kFast, all));
}

// BcqLinear takes the byte path where the policy says, for any m (tiled past kMaxM or not),
// streams only the byte layout, and unpacks to the matrix it was given.
TEST(BcqBytes, LinearUsesBytePathAndReportsItsBytes) {
  const CpuFeatures cpu = detect_cpu();
  std::mt19937_64 rng(testing::test_seed());
  ThreadPool pool(2);
  const BcqMatrix w = random_uniform(70, 256, 8, 128, rng);
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2, Isa::kScalar}) {
    for (Precision p : {Precision::kFast, Precision::kExact}) {
      const ByteKernel kernel = byte_kernel_for(isa, p, cpu);
      if ((isa == Isa::kAvx512 && !backend(isa).available(cpu)) || (isa == Isa::kAvx2 && !cpu.avx2)) continue;
      Result<BcqLinear> lin = BcqLinear::create(w, isa, p);
      ASSERT_TRUE(lin) << lin.status().message();
      const std::string what = std::string(isa_name(isa)) + " " + precision_name(p);
      ASSERT_EQ(lin->byte_path(), kernel != ByteKernel::kNone) << what;
      testing::expect_same_bcq(lin->unpack(), w);
      if (!lin->byte_path()) continue;
      const BcqBytesPacked packed = pack_bcq_bytes(w);
      EXPECT_EQ(lin->weight_bytes(), packed.bytes()) << what;
      EXPECT_EQ(lin->packed().data.size(), 0u) << what << ": no second copy";
      for (int64_t m : {1, 40}) {
        const std::vector<float> x = testing::random_activations(m, w.k, rng);
        std::vector<float> want(static_cast<size_t>(m * w.n)), got(want.size());
        bcq_bytes_gemm_ref(packed, quantize_acts(x.data(), m, w.k, w.cfg.g), want.data());
        ASSERT_TRUE(lin->forward(x.data(), m, got.data(), pool));
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0) << what << " m=" << m;
      }
    }
  }
}

// avx2, q <= 4, uniform grid: the LUT layout stays for small m and the int8 path's copy is byte
// codes (vpmaddubsw), taken from the policy's m (LUTQ_GEMM_PATH=auto) or always (int8), equal to
// the byte spec; a non-uniform matrix is never packed so on avx2 auto.
TEST(BcqBytes, Avx2UniformPrefillCopy) {
  if (!detect_cpu().avx2) GTEST_SKIP() << "CPU lacks AVX2";
  std::mt19937_64 rng(testing::test_seed());
  ThreadPool pool(2);
  const BcqMatrix w = random_uniform(70, 256, 4, 128, rng);
  const int64_t from = 2;  // choose_path's avx2 threshold at q = 4
  Result<BcqLinear> lin = BcqLinear::create(w, Isa::kAvx2, Precision::kFast, GemmPath::kAuto);
  ASSERT_TRUE(lin) << lin.status().message();
  EXPECT_FALSE(lin->byte_path());
  EXPECT_EQ(lin->prefill_copy_bytes(), pack_bcq_bytes(w).bytes());
  EXPECT_EQ(lin->path_for(from - 1), GemmPath::kLut);
  EXPECT_EQ(lin->path_for(from), GemmPath::kInt8Gemm);
  testing::expect_same_bcq(lin->unpack(), w);
  const BcqBytesPacked packed = pack_bcq_bytes(w);
  for (int64_t m : {from, int64_t{5}, int64_t{40}}) {
    const std::vector<float> x = testing::random_activations(m, w.k, rng);
    std::vector<float> want(static_cast<size_t>(m * w.n)), got(want.size());
    bcq_bytes_gemm_ref(packed, quantize_acts(x.data(), m, w.k, w.cfg.g), want.data());
    ASSERT_TRUE(lin->forward(x.data(), m, got.data(), pool));
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0) << "m=" << m;
  }
  Result<BcqLinear> forced = BcqLinear::create(w, Isa::kAvx2, Precision::kFast, GemmPath::kInt8Gemm);
  ASSERT_TRUE(forced);
  EXPECT_EQ(forced->path_for(1), GemmPath::kInt8Gemm);
  Result<BcqLinear> lut = BcqLinear::create(w, Isa::kAvx2, Precision::kFast, GemmPath::kLut);
  ASSERT_TRUE(lut);
  EXPECT_EQ(lut->prefill_copy_bytes(), 0);
  Result<BcqLinear> exact = BcqLinear::create(w, Isa::kAvx2, Precision::kExact, GemmPath::kAuto);
  ASSERT_TRUE(exact);
  EXPECT_EQ(exact->prefill_copy_bytes(), 0);
  const BcqMatrix fit = testing::random_bcq(70, 256, BcqConfig{4, 128, Orientation::kPerOC, true}, rng);
  Result<BcqLinear> other = BcqLinear::create(fit, Isa::kAvx2, Precision::kFast, GemmPath::kAuto);
  ASSERT_TRUE(other);
  EXPECT_EQ(other->prefill_copy_bytes(), 0) << "not a uniform grid: no copy on avx2";
}

}  // namespace
}  // namespace lutq::kernels
