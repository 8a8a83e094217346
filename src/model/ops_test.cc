// The model's non-GEMM ops: the one backend choice maps to each op's implementation as documented,
// and every fast path this CPU runs agrees with its scalar spec within a derived bound.
#include "model/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace lutq::model {
namespace {

TEST(OpIsa, ScalarMeansScalarEverywhere) {
  CpuFeatures all;
  all.avx2 = all.avx512 = all.avx512_vnni = all.avx_vnni = true;
  for (kernels::Isa isa : {kernels::Isa::kRef, kernels::Isa::kScalar}) {
    const OpIsa ops = op_isa(isa, all);
    EXPECT_FALSE(ops.avx2);
    EXPECT_EQ(ops.int8, kernels::Int8Isa::kScalar);
  }
  const OpIsa avx2 = op_isa(kernels::Isa::kAvx2, all);
  EXPECT_TRUE(avx2.avx2);
  EXPECT_EQ(avx2.int8, kernels::Int8Isa::kAvxVnni);  // 256-bit VNNI, not the zmm one
  EXPECT_EQ(op_isa(kernels::Isa::kAvx512, all).int8, kernels::Int8Isa::kAvx512Vnni);
  CpuFeatures none;
  EXPECT_FALSE(op_isa(kernels::Isa::kAvx2, none).avx2) << "never more than the CPU has";
}

// attend_head with AVX2 loops against the scalar spec: both compute fp32 dot products of
// head_dim terms (different association), softmax and Σ p_j v_j. A dot product of d terms differs
// by at most γ_d · Σ|q_i k_i|; after the scale and softmax the weights move by at most
// that much relative, and the output by at most (γ_d·S + γ_n) · max|v|, S = max Σ|q k|·scale.
TEST(AttendHead, Avx2MatchesScalarWithinBound) {
  if (!detect_cpu().avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int64_t hd : {7, 64, 128}) {
    for (int64_t n_keys : {1, 5, 33}) {
      const int64_t stride = hd + 3;
      std::vector<float> q(static_cast<size_t>(hd)), k(static_cast<size_t>(n_keys * stride)), v(k.size());
      for (float& x : q) x = d(rng);
      for (float& x : k) x = d(rng);
      for (float& x : v) x = d(rng);
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      std::vector<float> s1(static_cast<size_t>(n_keys)), s2(s1.size());
      std::vector<float> o1(static_cast<size_t>(hd)), o2(o1.size());
      attend_head(q.data(), k.data(), v.data(), n_keys, stride, hd, scale, s1.data(), o1.data(), false);
      attend_head(q.data(), k.data(), v.data(), n_keys, stride, hd, scale, s2.data(), o2.data(), true);
      double sum_qk = 0.0;
      float max_v = 0.0f;
      for (int64_t j = 0; j < n_keys; ++j) {
        double s = 0.0;
        for (int64_t i = 0; i < hd; ++i) s += std::abs(q[static_cast<size_t>(i)] * k[static_cast<size_t>(j * stride + i)]);
        sum_qk = std::max(sum_qk, s * scale);
        for (int64_t i = 0; i < hd; ++i) max_v = std::max(max_v, std::abs(v[static_cast<size_t>(j * stride + i)]));
      }
      const double u = std::ldexp(1.0, -24);
      const double bound = (2.0 * static_cast<double>(hd) * u * sum_qk * 2.0 + 2.0 * static_cast<double>(n_keys) * u) *
                               max_v + 1e-7;
      double worst = 0.0;
      int64_t at = 0;
      for (int64_t i = 0; i < hd; ++i) {
        const double diff = std::abs(static_cast<double>(o1[static_cast<size_t>(i)]) - o2[static_cast<size_t>(i)]);
        if (diff > worst) worst = diff, at = i;
      }
      EXPECT_LE(worst, bound) << "hd " << hd << " keys " << n_keys << ": worst at " << at << " scalar "
                              << o1[static_cast<size_t>(at)] << " avx2 " << o2[static_cast<size_t>(at)];
    }
  }
}

// RoPE's two pairings against their definitions on one head.
TEST(Rope, NormalAndNeoxPairings) {
  const int64_t hd = 8;
  const int64_t half = 3;  // rotate 6 of 8 dims: the last two stay
  std::vector<float> cs = {0.5f, -0.25f, 1.0f}, sn = {0.75f, 0.5f, 0.0f};
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> a = x, b = x;
  apply_rope(a.data(), 1, hd, cs.data(), sn.data(), half, RopeMode::kNormal);
  apply_rope(b.data(), 1, hd, cs.data(), sn.data(), half, RopeMode::kNeox);
  for (int64_t i = 0; i < half; ++i) {
    const auto n0 = static_cast<size_t>(2 * i), n1 = n0 + 1;
    EXPECT_FLOAT_EQ(a[n0], x[n0] * cs[static_cast<size_t>(i)] - x[n1] * sn[static_cast<size_t>(i)]);
    EXPECT_FLOAT_EQ(a[n1], x[n0] * sn[static_cast<size_t>(i)] + x[n1] * cs[static_cast<size_t>(i)]);
    const auto x0 = static_cast<size_t>(i), x1 = static_cast<size_t>(i + half);
    EXPECT_FLOAT_EQ(b[x0], x[x0] * cs[static_cast<size_t>(i)] - x[x1] * sn[static_cast<size_t>(i)]);
    EXPECT_FLOAT_EQ(b[x1], x[x0] * sn[static_cast<size_t>(i)] + x[x1] * cs[static_cast<size_t>(i)]);
  }
  EXPECT_EQ(a[6], 7.0f);
  EXPECT_EQ(b[7], 8.0f);
}

}  // namespace
}  // namespace lutq::model
