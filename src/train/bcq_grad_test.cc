// The BCQ scale gradients against finite differences of a double-precision forward. L(α, z) =
// Σ dy ⊙ (x · W(α, z)ᵀ) is linear in α and z, so the central difference is exact up to rounding
// (~1e-13 here); the float path sums m·(elements per scale set) products in fp32 after an sgemm
// of depth m, so its error is at most ~(m + group) · 2^-24 · Σ|terms|, below 1e-4 (1 + |g|) for
// these sizes. Also: dx, the round trip of the scales through fp16, and size errors.
#include "train/bcq_grad.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/fp16.h"

namespace lutq::train {
namespace {

format::BcqMatrix random_matrix(int64_t n, int64_t k, const format::BcqConfig& cfg, std::mt19937& rng) {
  Result<format::BcqMatrix> w = format::make_empty(n, k, cfg);
  EXPECT_TRUE(w.is_ok()) << w.status().message();
  std::uniform_int_distribution<int> bit(0, 1);
  std::uniform_real_distribution<float> a(0.01f, 0.5f);
  for (int i = 0; i < cfg.q; ++i) {
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < k; ++c) {
        if (bit(rng)) w->bits[static_cast<size_t>((i * n + r) * w->row_bytes() + c / 8)] |= uint8_t(1u << (c % 8));
      }
    }
  }
  for (uint16_t& h : w->alpha) h = fp32_to_fp16(a(rng));
  for (uint16_t& h : w->offset) h = fp32_to_fp16(a(rng) - 0.25f);
  return std::move(*w);
}

// L in double from the codes and the scales p.
double loss(const format::BcqMatrix& w, const std::vector<double>& alpha, const std::vector<double>& offset,
            const std::vector<float>& x, const std::vector<float>& dy, int64_t m) {
  double l = 0.0;
  for (int64_t r = 0; r < w.n; ++r) {
    for (int64_t c = 0; c < w.k; ++c) {
      const int64_t s = w.scale_set(r, c);
      double wv = offset.empty() ? 0.0 : offset[static_cast<size_t>(s)];
      for (int i = 0; i < w.cfg.q; ++i) wv += (w.bit(i, r, c) ? 1.0 : -1.0) * alpha[static_cast<size_t>(s * w.cfg.q + i)];
      for (int64_t row = 0; row < m; ++row) l += double(dy[row * w.n + r]) * double(x[row * w.k + c]) * wv;
    }
  }
  return l;
}

void check_layout(const format::BcqConfig& cfg, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t n = 64, k = 64, m = 3;
  const format::BcqMatrix w = random_matrix(n, k, cfg, rng);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(m * k), dy(m * n);
  for (float& v : x) v = d(rng);
  for (float& v : dy) v = d(rng);
  const ScaleParams p = scales_of(w);
  ScaleParams grad{std::vector<float>(p.alpha.size(), 0.0f), std::vector<float>(p.offset.size(), 0.0f)};
  std::vector<float> dx(m * k);
  ASSERT_TRUE(bcq_linear_backward(w, p, x.data(), dy.data(), m, dx.data(), grad).is_ok());
  std::vector<double> alpha(p.alpha.begin(), p.alpha.end()), offset(p.offset.begin(), p.offset.end());
  const double h = 1e-3;
  for (std::vector<double>* params : {&alpha, &offset}) {
    const std::vector<float>& g = params == &alpha ? grad.alpha : grad.offset;
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < params->size(); ++i) {
      const double keep = (*params)[i];
      (*params)[i] = keep + h;
      const double up = loss(w, alpha, offset, x, dy, m);
      (*params)[i] = keep - h;
      const double down = loss(w, alpha, offset, x, dy, m);
      (*params)[i] = keep;
      const double err = std::fabs((up - down) / (2 * h) - g[i]) / (1.0 + std::fabs(g[i]));
      if (err > worst) worst = err, at = i;
    }
    EXPECT_LT(worst, 1e-4) << (params == &alpha ? "alpha" : "offset") << " gradient, worst element " << at;
  }
  // dx = dy · W against a double product.
  const std::vector<float> wf = dequantize_with(w, p);
  for (int64_t row = 0; row < m; ++row) {
    for (int64_t c = 0; c < k; ++c) {
      double ref = 0.0, mag = 0.0;
      for (int64_t r = 0; r < n; ++r) {
        ref += double(dy[row * n + r]) * double(wf[r * k + c]);
        mag += std::fabs(double(dy[row * n + r]) * double(wf[r * k + c]));
      }
      ASSERT_NEAR(dx[row * k + c], ref, 1e-6 * (1.0 + mag)) << "dx[" << row << "][" << c << "]";
    }
  }
  // The master scales are the stored fp16 ones widened: the training forward starts from the file.
  const std::vector<float> stored = format::dequantize(w);
  for (size_t i = 0; i < wf.size(); ++i) ASSERT_NEAR(wf[i], stored[i], 1e-6f) << i;
}

TEST(BcqGrad, PerOcScalesAndOffsetsMatchFiniteDifferences) {
  check_layout({3, 32, format::Orientation::kPerOC, true}, 1);
}

TEST(BcqGrad, PerIcScalesMatchFiniteDifferences) {
  check_layout({2, 32, format::Orientation::kPerIC, false}, 2);
}

TEST(BcqGrad, StoreScalesRoundTripsAndRefusesWhatFp16CannotHold) {
  std::mt19937 rng(3);
  format::BcqMatrix w = random_matrix(32, 64, {2, 32, format::Orientation::kPerOC, true}, rng);
  ScaleParams p = scales_of(w);
  for (float& a : p.alpha) a *= 1.5f;
  ASSERT_TRUE(store_scales(p, w).is_ok());
  for (size_t i = 0; i < p.alpha.size(); ++i) EXPECT_EQ(fp16_to_fp32(w.alpha[i]), round_to_fp16(p.alpha[i]));
  p.alpha[3] = 1e6f;
  const Status s = store_scales(p, w);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("scale 3"), std::string::npos) << s.message();
  p.alpha.pop_back();
  ScaleParams grad = p;
  std::vector<float> x(64), dy(32);
  EXPECT_FALSE(bcq_linear_backward(w, p, x.data(), dy.data(), 1, nullptr, grad).is_ok());
}

}  // namespace
}  // namespace lutq::train
