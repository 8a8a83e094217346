// Each op's backward against central finite differences of its forward, in double on tiny
// shapes. The loss is L = Σ r ⊙ y for a fixed random r, so dy = r. With step h the central
// difference errs by O(h² |f'''|) (truncation) plus O(ε |L| / h) (rounding, ε = 2^-53); at
// h = 1e-5 and |L|, |f'''| = O(1..100) both stay below ~1e-8, so the check allows 1e-7 (1 + |g|)
// and prints the worst element when it fails.
#include "train/grad_ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

namespace lutq::train {
namespace {

using Vec = std::vector<double>;

Vec random_vec(size_t n, std::mt19937& rng, double scale = 1.0) {
  std::normal_distribution<double> d(0.0, scale);
  Vec v(n);
  for (double& x : v) x = d(rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Compares the analytic gradient `grad` of loss() with respect to `x` with central differences.
void expect_gradient(const char* what, Vec& x, const Vec& grad, const std::function<double()>& loss) {
  constexpr double h = 1e-5;
  double worst = 0.0;
  size_t at = 0;
  double fd_at = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = loss();
    x[i] = keep - h;
    const double down = loss();
    x[i] = keep;
    const double fd = (up - down) / (2 * h);
    const double err = std::fabs(fd - grad[i]) / (1.0 + std::fabs(grad[i]));
    if (err > worst) worst = err, at = i, fd_at = fd;
  }
  EXPECT_LT(worst, 1e-7) << what << ": worst element " << at << ": analytic " << grad[at] << ", finite difference "
                         << fd_at;
}

TEST(GradOps, RmsNormMatchesFiniteDifferences) {
  std::mt19937 rng(1);
  const int64_t m = 3, d = 8;
  const double eps = 1e-5;
  Vec x = random_vec(m * d, rng), w = random_vec(d, rng), r = random_vec(m * d, rng), y(m * d);
  const auto loss = [&] {
    rmsnorm_forward(x.data(), w.data(), m, d, eps, y.data());
    return dot(y, r);
  };
  Vec dx(m * d), dw(d, 0.0);
  rmsnorm_backward(x.data(), w.data(), m, d, eps, r.data(), dx.data(), dw.data());
  expect_gradient("rmsnorm dx", x, dx, loss);
  expect_gradient("rmsnorm dw", w, dw, loss);
}

TEST(GradOps, SwigluMatchesFiniteDifferences) {
  std::mt19937 rng(2);
  const int64_t n = 24;
  Vec g = random_vec(n, rng, 3.0), u = random_vec(n, rng), r = random_vec(n, rng), h(n);
  const auto loss = [&] {
    swiglu_forward(g.data(), u.data(), n, h.data());
    return dot(h, r);
  };
  Vec dg(n), du(n);
  swiglu_backward(g.data(), u.data(), n, r.data(), dg.data(), du.data());
  expect_gradient("swiglu dgate", g, dg, loss);
  expect_gradient("swiglu dup", u, du, loss);
}

TEST(GradOps, RopeBackwardIsTheInverseRotation) {
  std::mt19937 rng(3);
  const int64_t m = 4, heads = 2, hd = 8;
  Vec ang = random_vec(m * hd / 2, rng, 2.0), cs(ang.size()), sn(ang.size());
  for (size_t i = 0; i < ang.size(); ++i) cs[i] = std::cos(ang[i]), sn[i] = std::sin(ang[i]);
  for (const bool neox : {false, true}) {
    Vec x = random_vec(m * heads * hd, rng), r = random_vec(x.size(), rng);
    const auto loss = [&] {
      Vec y = x;
      rope_apply(y.data(), m, heads, hd, cs.data(), sn.data(), neox, false);
      return dot(y, r);
    };
    Vec dx = r;
    rope_apply(dx.data(), m, heads, hd, cs.data(), sn.data(), neox, true);
    expect_gradient(neox ? "rope (neox) dx" : "rope dx", x, dx, loss);
    Vec back = x;  // forward then inverse is the identity
    rope_apply(back.data(), m, heads, hd, cs.data(), sn.data(), neox, false);
    rope_apply(back.data(), m, heads, hd, cs.data(), sn.data(), neox, true);
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(back[i], x[i], 1e-12);
  }
}

TEST(GradOps, GroupedCausalAttentionMatchesFiniteDifferences) {
  std::mt19937 rng(4);
  const int64_t m = 5, n_head = 4, n_kv = 2, hd = 4;
  const double scale = 1.0 / std::sqrt(double(hd));
  Vec q = random_vec(m * n_head * hd, rng), k = random_vec(m * n_kv * hd, rng), v = random_vec(m * n_kv * hd, rng);
  Vec r = random_vec(m * n_head * hd, rng), out(r.size()), p(n_head * m * m);
  const auto loss = [&] {
    attention_forward(q.data(), k.data(), v.data(), m, n_head, n_kv, hd, scale, out.data(), static_cast<double*>(nullptr));
    return dot(out, r);
  };
  attention_forward(q.data(), k.data(), v.data(), m, n_head, n_kv, hd, scale, out.data(), p.data());
  Vec dq(q.size()), dk(k.size()), dv(v.size());
  attention_backward(q.data(), k.data(), v.data(), p.data(), m, n_head, n_kv, hd, scale, r.data(), dq.data(), dk.data(),
                     dv.data());
  expect_gradient("attention dq", q, dq, loss);
  expect_gradient("attention dk", k, dk, loss);
  expect_gradient("attention dv", v, dv, loss);
  // Causality: row 0 attends only itself, so its output is v of row 0 for every head of a group.
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t c = 0; c < hd; ++c) EXPECT_NEAR(out[h * hd + c], v[(h / (n_head / n_kv)) * hd + c], 1e-12);
  }
}

}  // namespace
}  // namespace lutq::train
