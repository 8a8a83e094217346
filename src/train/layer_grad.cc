// A decoder layer's forward with a tape and its backward (layer_grad.h):
//   h1 = norm(x); q, k, v = h1 Wᵀ (+ b); RoPE(q, k); att = attention(q, k, v); x2 = x + att Woᵀ
//   h2 = norm(x2); act = silu(h2 Wgᵀ) ⊙ (h2 Wuᵀ); y = x2 + act Wdᵀ
// The backward runs the same steps in reverse; every linear gives G = dyᵀ x and dx = dy W.
#include "train/layer_grad.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "train/grad_ops.h"

namespace lutq::train {
namespace {

// c[rows][cols] (+)= a · b with a [rows][inner] or its transpose, b [inner][cols] or its transpose.
template <class T>
void gemm(bool ta, bool tb, int64_t rows, int64_t cols, int64_t inner, const T* a, const T* b, T* c, bool add) {
  const auto ra = ta ? CblasTrans : CblasNoTrans, rb = tb ? CblasTrans : CblasNoTrans;
  const int lda = static_cast<int>(ta ? rows : inner), ldb = static_cast<int>(tb ? inner : cols);
  const T beta = add ? T(1) : T(0);
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ra, rb, int(rows), int(cols), int(inner), 1.0f, a, lda, b, ldb, beta, c, int(cols));
  } else {
    cblas_dgemm(CblasRowMajor, ra, rb, int(rows), int(cols), int(inner), 1.0, a, lda, b, ldb, beta, c, int(cols));
  }
}

// y[m][n] = x[m][k] · W[n][k]ᵀ (+ bias).
template <class T>
void linear(const T* x, const T* w, const T* bias, int64_t m, int64_t n, int64_t k, T* y) {
  gemm<T>(false, true, m, n, k, x, w, y, false);
  if (bias == nullptr) return;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < n; ++j) y[r * n + j] += bias[j];
  }
}

// The backward of linear(): G = dyᵀ x (written), dx (+)= dy · W.
template <class T>
void linear_back(const T* x, const T* w, const T* dy, int64_t m, int64_t n, int64_t k, std::vector<T>& g, T* dx,
                 bool add) {
  g.assign(static_cast<size_t>(n * k), T(0));
  gemm<T>(true, false, n, k, m, dy, x, g.data(), false);
  gemm<T>(false, false, m, k, n, dy, w, dx, add);
}

template <class T>
std::vector<T> sized(int64_t n) {
  return std::vector<T>(static_cast<size_t>(n));
}

}  // namespace

template <class T>
void layer_forward(const LayerShape& s, const LayerParams<T>& p, const T* x, int64_t m, const T* cos, const T* sin,
                   T* y, LayerTape<T>& t) {
  const int64_t dq = s.n_head * s.hd, dkv = s.n_kv * s.hd;
  t.m = m;
  t.x.assign(x, x + m * s.d);
  t.h1 = sized<T>(m * s.d), t.q = sized<T>(m * dq), t.k = sized<T>(m * dkv), t.v = sized<T>(m * dkv);
  t.p = sized<T>(s.n_head * m * m), t.att = sized<T>(m * dq), t.x2 = sized<T>(m * s.d), t.h2 = sized<T>(m * s.d);
  t.gate = sized<T>(m * s.n_ff), t.up = sized<T>(m * s.n_ff), t.act = sized<T>(m * s.n_ff);
  rmsnorm_forward(x, p.attn_norm, m, s.d, s.eps, t.h1.data());
  linear(t.h1.data(), p.w[kWq], p.qkv_bias[0], m, dq, s.d, t.q.data());
  linear(t.h1.data(), p.w[kWk], p.qkv_bias[1], m, dkv, s.d, t.k.data());
  linear(t.h1.data(), p.w[kWv], p.qkv_bias[2], m, dkv, s.d, t.v.data());
  rope_apply(t.q.data(), m, s.n_head, s.hd, cos, sin, s.neox, false);
  rope_apply(t.k.data(), m, s.n_kv, s.hd, cos, sin, s.neox, false);
  attention_forward(t.q.data(), t.k.data(), t.v.data(), m, s.n_head, s.n_kv, s.hd, 1.0 / std::sqrt(double(s.hd)),
                    t.att.data(), t.p.data());
  linear(t.att.data(), p.w[kWo], static_cast<const T*>(nullptr), m, s.d, dq, t.x2.data());
  for (int64_t i = 0; i < m * s.d; ++i) t.x2[i] += x[i];
  rmsnorm_forward(t.x2.data(), p.ffn_norm, m, s.d, s.eps, t.h2.data());
  linear(t.h2.data(), p.w[kWgate], static_cast<const T*>(nullptr), m, s.n_ff, s.d, t.gate.data());
  linear(t.h2.data(), p.w[kWup], static_cast<const T*>(nullptr), m, s.n_ff, s.d, t.up.data());
  swiglu_forward(t.gate.data(), t.up.data(), m * s.n_ff, t.act.data());
  linear(t.act.data(), p.w[kWdown], static_cast<const T*>(nullptr), m, s.d, s.n_ff, y);
  for (int64_t i = 0; i < m * s.d; ++i) y[i] += t.x2[i];
}

template <class T>
void layer_backward(const LayerShape& s, const LayerParams<T>& p, const LayerTape<T>& t, const T* cos, const T* sin,
                    const T* dy, LayerGrads<T>& g) {
  const int64_t m = t.m, dq = s.n_head * s.hd, dkv = s.n_kv * s.hd;
  // FFN: y = x2 + down(act)
  std::vector<T> dact = sized<T>(m * s.n_ff), dgate = sized<T>(m * s.n_ff), dup = sized<T>(m * s.n_ff);
  linear_back(t.act.data(), p.w[kWdown], dy, m, s.d, s.n_ff, g.w[kWdown], dact.data(), false);
  swiglu_backward(t.gate.data(), t.up.data(), m * s.n_ff, dact.data(), dgate.data(), dup.data());
  std::vector<T> dh2 = sized<T>(m * s.d);
  linear_back(t.h2.data(), p.w[kWgate], dgate.data(), m, s.n_ff, s.d, g.w[kWgate], dh2.data(), false);
  linear_back(t.h2.data(), p.w[kWup], dup.data(), m, s.n_ff, s.d, g.w[kWup], dh2.data(), true);
  std::vector<T> dx2 = sized<T>(m * s.d);
  g.ffn_norm.assign(static_cast<size_t>(s.d), T(0));
  rmsnorm_backward(t.x2.data(), p.ffn_norm, m, s.d, s.eps, dh2.data(), dx2.data(), g.ffn_norm.data());
  for (int64_t i = 0; i < m * s.d; ++i) dx2[i] += dy[i];
  // Attention: x2 = x + o(att)
  std::vector<T> datt = sized<T>(m * dq), gq = sized<T>(m * dq), gk = sized<T>(m * dkv), gv = sized<T>(m * dkv);
  linear_back(t.att.data(), p.w[kWo], dx2.data(), m, s.d, dq, g.w[kWo], datt.data(), false);
  attention_backward(t.q.data(), t.k.data(), t.v.data(), t.p.data(), m, s.n_head, s.n_kv, s.hd,
                     1.0 / std::sqrt(double(s.hd)), datt.data(), gq.data(), gk.data(), gv.data());
  rope_apply(gq.data(), m, s.n_head, s.hd, cos, sin, s.neox, true);
  rope_apply(gk.data(), m, s.n_kv, s.hd, cos, sin, s.neox, true);
  std::vector<T> dh1 = sized<T>(m * s.d);
  const std::array<const std::vector<T>*, 3> dqkv = {&gq, &gk, &gv};
  for (int i = 0; i < 3; ++i) {
    const int64_t n = i == 0 ? dq : dkv;
    linear_back(t.h1.data(), p.w[kWq + i], dqkv[i]->data(), m, n, s.d, g.w[kWq + i], dh1.data(), i > 0);
    if (p.qkv_bias[i] == nullptr) continue;
    g.qkv_bias[i].assign(static_cast<size_t>(n), T(0));
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < n; ++j) g.qkv_bias[i][j] += (*dqkv[i])[r * n + j];
    }
  }
  g.dx = sized<T>(m * s.d);
  g.attn_norm.assign(static_cast<size_t>(s.d), T(0));
  rmsnorm_backward(t.x.data(), p.attn_norm, m, s.d, s.eps, dh1.data(), g.dx.data(), g.attn_norm.data());
  for (int64_t i = 0; i < m * s.d; ++i) g.dx[i] += dx2[i];
}

template void layer_forward<float>(const LayerShape&, const LayerParams<float>&, const float*, int64_t, const float*,
                                   const float*, float*, LayerTape<float>&);
template void layer_forward<double>(const LayerShape&, const LayerParams<double>&, const double*, int64_t,
                                    const double*, const double*, double*, LayerTape<double>&);
template void layer_backward<float>(const LayerShape&, const LayerParams<float>&, const LayerTape<float>&,
                                    const float*, const float*, const float*, LayerGrads<float>&);
template void layer_backward<double>(const LayerShape&, const LayerParams<double>&, const LayerTape<double>&,
                                     const double*, const double*, const double*, LayerGrads<double>&);

}  // namespace lutq::train
