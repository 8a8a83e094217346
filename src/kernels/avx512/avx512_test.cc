// The AVX-512 backend's own suite: layout round trip, int8 partial sums equal to the scalar
// reference's (edge activations included), and gemm against the scalar LUT reference for both
// precisions and orientations: bit-identical where the operation order is the reference's
// (per-OC; per-IC without offsets), within the reassociation bound of the offset dot otherwise.
// Skips, naming the CPU, where the backend is not available.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "kernels/kernel.h"
#include "kernels/lut_tables.h"
#include "support/random_bcq.h"

namespace lutq::kernels {
namespace {

using format::BcqConfig;
using format::BcqMatrix;
using format::Orientation;

bool have_avx512() { return avx512_backend().available(detect_cpu()); }
std::string no_avx512() { return "avx512 backend not available on this CPU (" + detect_cpu().summary() + ")"; }

ThreadPool& shared_pool(int threads) {
  static ThreadPool one(1);
  static ThreadPool two(2);
  return threads == 1 ? one : two;
}

BcqMatrix random_matrix(int64_t n, int64_t k, const BcqConfig& cfg, uint32_t seed) {
  std::mt19937_64 rng(seed);
  return testing::random_bcq(n, k, cfg, rng);
}

// N(0, 1) activations with a few outliers (the per-block int8 scales must cope).
std::vector<float> random_x(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 99);
  std::vector<float> x(static_cast<size_t>(count));
  for (auto& v : x) v = normal(rng) * (pick(rng) == 0 ? 20.0f : 1.0f);
  return x;
}

std::string describe_case(const BcqMatrix& w, Precision p, int64_t m, int threads) {
  return format::describe(w) + " " + precision_name(p) + " m=" + std::to_string(m) +
         " threads=" + std::to_string(threads);
}

TEST(Avx512Layout, RoundTripIsExact) {
  if (!have_avx512()) GTEST_SKIP() << no_avx512();
  const Backend& be = avx512_backend();
  uint32_t seed = 1;
  for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
    for (int64_t n : {1, 17, 32, 33, 100}) {
      for (int64_t k : {32, 96, 576}) {
        for (int q : {1, 2, 3, 8}) {
          const int64_t extent = o == Orientation::kPerOC ? k : n;
          for (int64_t g : {int64_t{32}, int64_t{64}, extent}) {
            if (extent % g != 0) continue;
            const BcqMatrix w = random_matrix(n, k, BcqConfig{q, g, o, (seed & 1) != 0}, seed++);
            for (Precision p : {Precision::kExact, Precision::kFast}) {
              ASSERT_TRUE(be.check(w, p).is_ok());
              const PackedMatrix pw = be.repack(w, p);
              EXPECT_EQ(pw.isa, Isa::kAvx512);
              EXPECT_EQ(pw.row_tile, 32);
              SCOPED_TRACE(format::describe(w));
              testing::expect_same_bcq(be.unpack(pw), w);
              if (HasFailure()) return;
            }
          }
        }
      }
    }
  }
}

void expect_partials_equal(const BcqMatrix& w, const std::vector<float>& x) {
  const Backend& be = avx512_backend();
  const Backend& sc = scalar_backend();
  const int64_t nb = w.k / lut_block(w);
  const size_t count = static_cast<size_t>(w.n * w.cfg.q * nb);
  std::vector<int32_t> got(count, -12345), want(count, 54321);
  be.int8_partials(be.repack(w, Precision::kFast), x.data(), got.data());
  sc.int8_partials(sc.repack(w, Precision::kFast), x.data(), want.data());
  for (size_t e = 0; e < count; ++e) {
    if (got[e] != want[e]) {
      const size_t b = e % static_cast<size_t>(nb);
      const size_t ri = e / static_cast<size_t>(nb);
      FAIL() << format::describe(w) << ": partial of row " << ri / static_cast<size_t>(w.cfg.q) << " plane "
             << ri % static_cast<size_t>(w.cfg.q) << " block " << b << " is " << got[e] << ", scalar " << want[e];
    }
  }
}

TEST(Avx512Partials, EqualScalarExactly) {
  if (!have_avx512()) GTEST_SKIP() << no_avx512();
  uint32_t seed = 100;
  for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
    for (int64_t n : {1, 17, 33, 64}) {
      for (int64_t k : {32, 96, 576, 1024}) {
        for (int q : {1, 2, 3, 4, 8}) {
          const int64_t extent = o == Orientation::kPerOC ? k : n;
          for (int64_t g : {int64_t{32}, int64_t{64}, int64_t{128}, int64_t{256}, extent}) {
            if (extent % g != 0) continue;
            const BcqMatrix w = random_matrix(n, k, BcqConfig{q, g, o, (seed & 1) != 0}, seed);
            expect_partials_equal(w, random_x(k, seed + 7));
            ++seed;
          }
        }
      }
    }
  }
}

TEST(Avx512Partials, EdgeActivations) {
  if (!have_avx512()) GTEST_SKIP() << no_avx512();
  for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
    const int64_t k = 512;
    const BcqMatrix w = random_matrix(64, k, BcqConfig{3, o == Orientation::kPerOC ? 128 : 32, o, false}, 9);
    std::vector<float> x = random_x(k, 10);
    for (int64_t c = 0; c < 128; ++c) x[static_cast<size_t>(c)] = 0.0f;  // a zero block: scale 0
    for (int64_t c = 128; c < 256; ++c) x[static_cast<size_t>(c)] *= 1e-39f;  // subnormal: inv overflows
    for (int64_t c = 256; c < 384; c += 2) x[static_cast<size_t>(c)] = 0.5f;  // ties to even
    expect_partials_equal(w, x);
  }
}

// The bound between two results that only sum the per-IC offset dot in different orders:
// both are within γ_N·Σ_c (Σ_i |α_i| + |z|)·|x_c| of the exact value (docs/kernels.md,
// N = k + q + 16), so they differ by at most twice that.
double reorder_bound(const BcqMatrix& w, const float* x, int64_t r) {
  double mag = 0.0;
  for (int64_t c = 0; c < w.k; ++c) {
    const int64_t set = w.scale_set(r, c);
    double a = w.cfg.has_offset ? std::fabs(fp16_to_fp32(w.offset[static_cast<size_t>(set)])) : 0.0;
    for (int i = 0; i < w.cfg.q; ++i) a += std::fabs(fp16_to_fp32(w.alpha[static_cast<size_t>(set * w.cfg.q + i)]));
    mag += a * std::fabs(x[c]);
  }
  const double nu = static_cast<double>(w.k + w.cfg.q + 16) * std::ldexp(1.0, -24);
  return 2.0 * nu / (1.0 - nu) * mag;
}

void check_gemm(const BcqMatrix& w, Precision p, const std::vector<int64_t>& ms, ThreadPool& pool) {
  const Backend& be = avx512_backend();
  const Backend& sc = scalar_backend();
  const PackedMatrix pa = be.repack(w, p);
  const PackedMatrix ps = scalar_spec(w, pa);  // the same algorithm (pa.uniform)
  const std::vector<float> x = random_x(kMaxM * w.k, static_cast<uint32_t>(w.n * 31 + w.k + w.cfg.q));
  std::vector<float> want(static_cast<size_t>(kMaxM * w.n));
  sc.gemm(ps, x.data(), kMaxM, want.data(), shared_pool(1));
  const bool exact_match = w.cfg.orientation == Orientation::kPerOC || !w.cfg.has_offset;
  for (int64_t m : ms) {
    const std::string what = describe_case(w, p, m, pool.size());
    std::vector<float> y(static_cast<size_t>(m * w.n) + 7, std::numeric_limits<float>::quiet_NaN());
    be.gemm(pa, x.data(), m, y.data(), pool);
    for (size_t e = static_cast<size_t>(m * w.n); e < y.size(); ++e) ASSERT_TRUE(std::isnan(y[e])) << "wrote past y: " << what;
    double worst = -1.0, worst_ratio = -1.0, worst_bound = 0.0;
    int64_t worst_at = 0;
    for (int64_t e = 0; e < m * w.n; ++e) {
      const float got = y[static_cast<size_t>(e)];
      const float ref = want[static_cast<size_t>(e)];
      ASSERT_TRUE(std::isfinite(got)) << what << ": y[" << e / w.n << "," << e % w.n << "] = " << got;
      if (exact_match) {
        ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(ref))
            << what << ": y[" << e / w.n << "," << e % w.n << "] = " << got << ", scalar " << ref << " (must be bit-identical)";
        continue;
      }
      const double bound = reorder_bound(w, x.data() + (e / w.n) * w.k, e % w.n);
      const double err = std::fabs(static_cast<double>(got) - ref);
      if (err / (bound + 1e-300) > worst_ratio) {
        worst_ratio = err / (bound + 1e-300);
        worst = err;
        worst_bound = bound;
        worst_at = e;
      }
    }
    ASSERT_LE(worst_ratio, 1.0) << what << ": worst y[" << worst_at / w.n << "," << worst_at % w.n << "] = "
                                << y[static_cast<size_t>(worst_at)] << ", scalar " << want[static_cast<size_t>(worst_at)]
                                << ", |diff| " << worst << " > bound " << worst_bound;
  }
}

class Avx512Gemm : public ::testing::TestWithParam<Precision> {};

TEST_P(Avx512Gemm, PerOcMatchesScalar) {
  if (!have_avx512()) GTEST_SKIP() << no_avx512();
  uint32_t seed = 1000;
  for (int q : {1, 2, 3, 4, 5, 8}) {
    for (int64_t g : {32, 64, 128, 256, 0}) {
      for (bool off : {false, true}) {
        const int64_t n = (seed % 3 == 0) ? 100 : (seed % 3 == 1 ? 33 : 64);
        const int64_t k = g == 0 ? 576 : 512;
        const BcqMatrix w = random_matrix(n, k, BcqConfig{q, g == 0 ? k : g, Orientation::kPerOC, off}, seed++);
        for (int threads : {1, 2}) {
          check_gemm(w, GetParam(), {1, 2, 3, 4, 5, 8, 17, 32}, shared_pool(threads));
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST_P(Avx512Gemm, PerIcMatchesScalar) {
  if (!have_avx512()) GTEST_SKIP() << no_avx512();
  uint32_t seed = 2000;
  for (int q : {1, 2, 3, 4, 6}) {
    for (int64_t g : {32, 64, 128, 0}) {
      for (bool off : {false, true}) {
        const int64_t n = g == 0 ? (seed % 2 ? 17 : 100) : 256;
        const int64_t k = (seed % 2) ? 96 : 512;
        const BcqMatrix w = random_matrix(n, k, BcqConfig{q, g == 0 ? n : g, Orientation::kPerIC, off}, seed++);
        for (int threads : {1, 2}) {
          check_gemm(w, GetParam(), {1, 2, 3, 8, 17, 32}, shared_pool(threads));
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST_P(Avx512Gemm, OddShapes) {
  if (!have_avx512()) GTEST_SKIP() << no_avx512();
  uint32_t seed = 3000;
  for (int64_t n : {1, 17, 33}) {
    for (int64_t k : {32, 96, 2048}) {
      for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
        const int64_t g = o == Orientation::kPerOC ? k : n;
        const int q = 1 + static_cast<int>(seed % 8);  // all of 1..8
        const BcqMatrix w = random_matrix(n, k, BcqConfig{q, g, o, seed % 2 == 0}, seed);
        for (int threads : {1, 2}) {
          check_gemm(w, GetParam(), {1, 3, 32}, shared_pool(threads));
          if (HasFatalFailure()) return;
        }
        ++seed;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Avx512, Avx512Gemm, ::testing::Values(Precision::kExact, Precision::kFast),
                         [](const ::testing::TestParamInfo<Precision>& info) {
                           return std::string(precision_name(info.param));
                         });

}  // namespace
}  // namespace lutq::kernels
