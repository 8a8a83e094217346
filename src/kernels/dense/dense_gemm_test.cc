#include "kernels/dense/dense_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/thread_pool.h"

namespace lutq::kernels {
namespace {

enum class Variant { kScalar, kAvx2 };

double gamma_n(int64_t n) {
  const double u = std::ldexp(1.0, -24);
  return static_cast<double>(n) * u / (1.0 - static_cast<double>(n) * u);
}

std::vector<float> random_values(size_t count, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float& f : v) f = dist(gen);
  return v;
}

// Runs one variant and checks every output against a double-precision loop with the bound
// |err| <= γ_{k+2} · Σ|w||x|. Returns an empty string on success, else the worst element.
std::string check_gemm(Variant variant, int64_t n, int64_t k, int64_t m, ThreadPool& pool, uint32_t seed) {
  const std::vector<float> w = random_values(static_cast<size_t>(n * k), seed);
  const std::vector<float> x = random_values(static_cast<size_t>(m * k), seed + 1);
  std::vector<float> y(static_cast<size_t>(m * n), std::numeric_limits<float>::quiet_NaN());
  const DenseWeights dw{w.data(), n, k};
  if (variant == Variant::kAvx2) {
    dense_gemm(dw, x.data(), m, y.data(), pool, /*use_avx2=*/true);
  } else {
    dense_gemm(dw, x.data(), m, y.data(), pool, /*use_avx2=*/false);
  }
  const double g = gamma_n(k + 2);
  int64_t failures = 0;
  double worst_ratio = -1.0;
  std::ostringstream worst;
  for (int64_t mm = 0; mm < m; ++mm) {
    for (int64_t r = 0; r < n; ++r) {
      double exact = 0.0;
      double mag = 0.0;
      for (int64_t c = 0; c < k; ++c) {
        const double p = static_cast<double>(w[static_cast<size_t>(r * k + c)]) * x[static_cast<size_t>(mm * k + c)];
        exact += p;
        mag += std::fabs(p);
      }
      const double got = y[static_cast<size_t>(mm * n + r)];
      const double err = std::fabs(got - exact);
      const double bound = g * mag;
      const bool ok = err <= bound;
      // NaN (an unwritten output) compares false and ranks worst.
      const double ratio = std::isnan(err) ? std::numeric_limits<double>::infinity() : err / std::max(bound, 1e-300);
      if (!ok) ++failures;
      if (ratio > worst_ratio) {
        worst_ratio = ratio;
        worst.str("");
        worst << "y[" << mm << "," << r << "] = " << got << ", exact " << exact << ", |err| " << err << ", bound "
              << bound;
      }
    }
  }
  if (failures == 0) return "";
  std::ostringstream msg;
  msg << failures << " of " << m * n << " outputs out of bounds; worst: " << worst.str();
  return msg.str();
}

struct DenseCase {
  int64_t n, k, m;
};

std::vector<Variant> variants() {
  std::vector<Variant> v{Variant::kScalar};
  if (detect_cpu().avx2) v.push_back(Variant::kAvx2);
  return v;
}

const char* variant_name(Variant v) { return v == Variant::kAvx2 ? "avx2" : "scalar"; }

void run_cases(const std::vector<DenseCase>& cases) {
  ThreadPool pool1(1);
  ThreadPool pool2(2);
  uint32_t seed = 1;
  for (Variant v : variants()) {
    for (const DenseCase& c : cases) {
      for (ThreadPool* pool : {&pool1, &pool2}) {
        const std::string err = check_gemm(v, c.n, c.k, c.m, *pool, seed += 2);
        EXPECT_TRUE(err.empty()) << variant_name(v) << " n=" << c.n << " k=" << c.k << " m=" << c.m
                                 << " threads=" << pool->size() << ": " << err;
      }
    }
  }
}

TEST(DenseGemm, AwkwardShapesWithinBound) {
  std::vector<DenseCase> cases;
  for (int64_t n : {1, 7, 33}) {
    for (int64_t k : {1, 5, 100, 4096}) {
      for (int64_t m : {1, 3, 8, 32}) cases.push_back({n, k, m});
    }
  }
  run_cases(cases);
}

// Crosses the AVX2 kernel's k blocks (512) and activation-row blocks (64), with ragged tails.
TEST(DenseGemm, BlockBoundaries) {
  run_cases({{9, 1037, 70}, {64, 512, 65}, {5, 1024, 2}, {130, 520, 5}});
}

// Threads must not change a single bit: each output is computed by one thread in a fixed order.
TEST(DenseGemm, ThreadCountDoesNotChangeResults) {
  ThreadPool pool1(1);
  ThreadPool pool2(2);
  const int64_t n = 45, k = 700;
  const std::vector<float> w = random_values(static_cast<size_t>(n * k), 7);
  const DenseWeights dw{w.data(), n, k};
  for (int64_t m : {1, 6}) {
    const std::vector<float> x = random_values(static_cast<size_t>(m * k), 8);
    for (Variant v : variants()) {
      std::vector<float> y1(static_cast<size_t>(m * n)), y2(static_cast<size_t>(m * n));
      dense_gemm(dw, x.data(), m, y1.data(), pool1, v == Variant::kAvx2);
      dense_gemm(dw, x.data(), m, y2.data(), pool2, v == Variant::kAvx2);
      EXPECT_EQ(y1, y2) << variant_name(v) << " m=" << m;
    }
  }
}

}  // namespace
}  // namespace lutq::kernels
