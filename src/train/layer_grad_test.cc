// A whole decoder layer's backward against central finite differences of its forward, in double
// (the bound of grad_ops_test.cc: 1e-7 (1 + |g|) at h = 1e-5), for every input, norm weight,
// linear weight and q/k/v bias, in both RoPE pairings; and the float path against the double one.
#include "train/layer_grad.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace lutq::train {
namespace {

struct TinyLayer {
  LayerShape s{8, 4, 2, 4, 12, 1e-5, false};
  int64_t m = 5;
  std::vector<double> x, attn_norm, ffn_norm, cos, sin, r;
  std::array<std::vector<double>, kNumLayerLinears> w;
  std::array<std::vector<double>, 3> bias;

  explicit TinyLayer(uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> d(0.0, 0.5);
    const auto fill = [&](std::vector<double>& v, int64_t n, double mean = 0.0) {
      v.resize(static_cast<size_t>(n));
      for (double& e : v) e = mean + d(rng);
    };
    const int64_t dq = s.n_head * s.hd, dkv = s.n_kv * s.hd;
    const std::array<std::pair<int64_t, int64_t>, kNumLayerLinears> shapes = {
        {{dq, s.d}, {dkv, s.d}, {dkv, s.d}, {s.d, dq}, {s.n_ff, s.d}, {s.n_ff, s.d}, {s.d, s.n_ff}}};
    for (int i = 0; i < kNumLayerLinears; ++i) fill(w[i], shapes[i].first * shapes[i].second);
    fill(bias[0], dq), fill(bias[1], dkv), fill(bias[2], dkv);
    fill(x, m * s.d), fill(attn_norm, s.d, 1.0), fill(ffn_norm, s.d, 1.0), fill(r, m * s.d);
    for (int64_t p = 0; p < m; ++p) {
      for (int64_t i = 0; i < s.hd / 2; ++i) {
        const double angle = double(p) * std::pow(10000.0, -2.0 * double(i) / double(s.hd));
        cos.push_back(std::cos(angle)), sin.push_back(std::sin(angle));
      }
    }
  }
  LayerParams<double> params() const {
    LayerParams<double> p;
    p.attn_norm = attn_norm.data(), p.ffn_norm = ffn_norm.data();
    for (int i = 0; i < kNumLayerLinears; ++i) p.w[i] = w[i].data();
    for (int i = 0; i < 3; ++i) p.qkv_bias[i] = bias[i].data();
    return p;
  }
  double loss() const {
    LayerTape<double> tape;
    std::vector<double> y(x.size());
    layer_forward(s, params(), x.data(), m, cos.data(), sin.data(), y.data(), tape);
    double l = 0.0;
    for (size_t i = 0; i < y.size(); ++i) l += y[i] * r[i];
    return l;
  }
};

void expect_fd(const char* what, TinyLayer& t, std::vector<double>& v, const std::vector<double>& g) {
  ASSERT_EQ(v.size(), g.size()) << what;
  constexpr double h = 1e-5;
  double worst = 0.0, fd_at = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i];
    v[i] = keep + h;
    const double up = t.loss();
    v[i] = keep - h;
    const double down = t.loss();
    v[i] = keep;
    const double fd = (up - down) / (2 * h);
    const double err = std::fabs(fd - g[i]) / (1.0 + std::fabs(g[i]));
    if (err > worst) worst = err, at = i, fd_at = fd;
  }
  EXPECT_LT(worst, 1e-7) << what << ": worst element " << at << ": analytic " << g[at] << ", finite difference " << fd_at;
}

TEST(LayerGrad, EveryGradientMatchesFiniteDifferences) {
  for (const bool neox : {false, true}) {
    TinyLayer t(neox ? 7 : 8);
    t.s.neox = neox;
    LayerTape<double> tape;
    std::vector<double> y(t.x.size());
    layer_forward(t.s, t.params(), t.x.data(), t.m, t.cos.data(), t.sin.data(), y.data(), tape);
    LayerGrads<double> g;
    layer_backward(t.s, t.params(), tape, t.cos.data(), t.sin.data(), t.r.data(), g);
    expect_fd("dx", t, t.x, g.dx);
    expect_fd("attn_norm", t, t.attn_norm, g.attn_norm);
    expect_fd("ffn_norm", t, t.ffn_norm, g.ffn_norm);
    const char* names[] = {"wq", "wk", "wv", "wo", "wgate", "wup", "wdown"};
    for (int i = 0; i < kNumLayerLinears; ++i) expect_fd(names[i], t, t.w[i], g.w[i]);
    for (int i = 0; i < 3; ++i) expect_fd("qkv bias", t, t.bias[i], g.qkv_bias[i]);
  }
}

TEST(LayerGrad, FloatPathAgreesWithDouble) {
  TinyLayer t(9);
  const auto to_f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  std::array<std::vector<float>, kNumLayerLinears> wf;
  LayerParams<float> pf;
  const std::vector<float> an = to_f(t.attn_norm), fn = to_f(t.ffn_norm), x = to_f(t.x), c = to_f(t.cos),
                           s = to_f(t.sin), r = to_f(t.r);
  pf.attn_norm = an.data(), pf.ffn_norm = fn.data();
  for (int i = 0; i < kNumLayerLinears; ++i) wf[i] = to_f(t.w[i]), pf.w[i] = wf[i].data();
  LayerTape<float> tf;
  std::vector<float> yf(x.size());
  layer_forward(t.s, pf, x.data(), t.m, c.data(), s.data(), yf.data(), tf);
  LayerGrads<float> gf;
  layer_backward(t.s, pf, tf, c.data(), s.data(), r.data(), gf);
  LayerParams<double> pd = t.params();
  pd.qkv_bias = {};
  LayerTape<double> td;
  std::vector<double> yd(t.x.size());
  layer_forward(t.s, pd, t.x.data(), t.m, t.cos.data(), t.sin.data(), yd.data(), td);
  LayerGrads<double> gd;
  layer_backward(t.s, pd, td, t.cos.data(), t.sin.data(), t.r.data(), gd);
  // fp32 through a few dozen dependent operations of O(1) values: relative error ~1e-6.
  for (size_t i = 0; i < yd.size(); ++i) ASSERT_NEAR(yf[i], yd[i], 1e-5 * (1 + std::fabs(yd[i]))) << "y " << i;
  for (size_t i = 0; i < gd.dx.size(); ++i) ASSERT_NEAR(gf.dx[i], gd.dx[i], 1e-4 * (1 + std::fabs(gd.dx[i]))) << i;
  for (size_t i = 0; i < gd.w[kWq].size(); ++i) {
    ASSERT_NEAR(gf.w[kWq][i], gd.w[kWq][i], 1e-4 * (1 + std::fabs(gd.w[kWq][i]))) << "wq " << i;
  }
}

}  // namespace
}  // namespace lutq::train
