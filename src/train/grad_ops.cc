// Forward and backward of the block ops (grad_ops.h). Derivations, per row:
//   RMSNorm  y = w ⊙ x r, r = (mean x² + eps)^-1/2:  dx = r (w ⊙ dy) − x r³/d · Σ_j w_j dy_j x_j
//   SwiGLU   h = g σ(g) u:  dg = dh u σ(g)(1 + g (1 − σ(g))),  du = dh g σ(g)
//   RoPE     y = R x with R orthogonal:  dx = Rᵀ dy
//   softmax attention  S = s Q Kᵀ (causal), P = softmax(S), O = P V:
//            dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dQ = s dS K,  dK = s dSᵀ Q
// GQA: the q heads of one group share k, v, so their dk, dv add up.
#include "train/grad_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace lutq::train {
namespace {

template <class T>
T sigmoid(T g) {
  return T(1) / (T(1) + std::exp(-g));
}

template <class T>
T inv_rms(const T* x, int64_t d, double eps) {
  double ss = 0.0;
  for (int64_t j = 0; j < d; ++j) ss += double(x[j]) * double(x[j]);
  return T(1.0 / std::sqrt(ss / double(d) + eps));
}

}  // namespace

template <class T>
void rmsnorm_forward(const T* x, const T* w, int64_t m, int64_t d, double eps, T* y) {
  for (int64_t r = 0; r < m; ++r) {
    const T* xr = x + r * d;
    const T s = inv_rms(xr, d, eps);
    for (int64_t j = 0; j < d; ++j) y[r * d + j] = w[j] * xr[j] * s;
  }
}

template <class T>
void rmsnorm_backward(const T* x, const T* w, int64_t m, int64_t d, double eps, const T* dy, T* dx, T* dw) {
  for (int64_t r = 0; r < m; ++r) {
    const T* xr = x + r * d;
    const T* g = dy + r * d;
    const T s = inv_rms(xr, d, eps);
    double dot = 0.0;
    for (int64_t j = 0; j < d; ++j) dot += double(w[j]) * double(g[j]) * double(xr[j]);
    const T c = T(dot * double(s) * double(s) * double(s) / double(d));
    for (int64_t j = 0; j < d; ++j) {
      dx[r * d + j] = s * w[j] * g[j] - xr[j] * c;
      dw[j] += g[j] * xr[j] * s;
    }
  }
}

template <class T>
void swiglu_forward(const T* gate, const T* up, int64_t n, T* h) {
  for (int64_t i = 0; i < n; ++i) h[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

template <class T>
void swiglu_backward(const T* gate, const T* up, int64_t n, const T* dh, T* dgate, T* dup) {
  for (int64_t i = 0; i < n; ++i) {
    const T sg = sigmoid(gate[i]);
    dgate[i] = dh[i] * up[i] * sg * (T(1) + gate[i] * (T(1) - sg));
    dup[i] = dh[i] * gate[i] * sg;
  }
}

template <class T>
void rope_apply(T* x, int64_t m, int64_t heads, int64_t hd, const T* cos, const T* sin, bool neox, bool inverse) {
  const int64_t half = hd / 2;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      T* v = x + (r * heads + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const T c = cos[r * half + i];
        const T s = inverse ? -sin[r * half + i] : sin[r * half + i];
        T& a = neox ? v[i] : v[2 * i];
        T& b = neox ? v[i + half] : v[2 * i + 1];
        const T a0 = a;
        a = a0 * c - b * s;
        b = a0 * s + b * c;
      }
    }
  }
}

template <class T>
void attention_forward(const T* q, const T* k, const T* v, int64_t m, int64_t n_head, int64_t n_kv, int64_t hd,
                       double scale, T* out, T* p) {
  const int64_t group = n_head / n_kv;
  std::vector<T> row(static_cast<size_t>(m));
  for (int64_t h = 0; h < n_head; ++h) {
    const int64_t kvh = h / group;
    for (int64_t i = 0; i < m; ++i) {
      const T* qi = q + (i * n_head + h) * hd;
      T mx = -INFINITY;
      for (int64_t j = 0; j <= i; ++j) {
        const T* kj = k + (j * n_kv + kvh) * hd;
        T s = 0;
        for (int64_t c = 0; c < hd; ++c) s += qi[c] * kj[c];
        row[j] = T(scale) * s;
        mx = std::max(mx, row[j]);
      }
      T sum = 0;
      for (int64_t j = 0; j <= i; ++j) sum += (row[j] = std::exp(row[j] - mx));
      T* o = out + (i * n_head + h) * hd;
      std::fill(o, o + hd, T(0));
      for (int64_t j = 0; j <= i; ++j) {
        const T pj = row[j] / sum;
        if (p != nullptr) p[(h * m + i) * m + j] = pj;
        const T* vj = v + (j * n_kv + kvh) * hd;
        for (int64_t c = 0; c < hd; ++c) o[c] += pj * vj[c];
      }
      if (p != nullptr) std::fill(p + (h * m + i) * m + i + 1, p + (h * m + i + 1) * m, T(0));
    }
  }
}

template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* p, int64_t m, int64_t n_head, int64_t n_kv,
                        int64_t hd, double scale, const T* dout, T* dq, T* dk, T* dv) {
  const int64_t group = n_head / n_kv;
  std::fill(dq, dq + m * n_head * hd, T(0));
  std::fill(dk, dk + m * n_kv * hd, T(0));
  std::fill(dv, dv + m * n_kv * hd, T(0));
  std::vector<T> ds(static_cast<size_t>(m));
  for (int64_t h = 0; h < n_head; ++h) {
    const int64_t kvh = h / group;
    for (int64_t i = 0; i < m; ++i) {
      const T* pi = p + (h * m + i) * m;
      const T* go = dout + (i * n_head + h) * hd;
      T dot = 0;  // Σ_j dP_ij P_ij
      for (int64_t j = 0; j <= i; ++j) {
        const T* vj = v + (j * n_kv + kvh) * hd;
        T dp = 0;
        for (int64_t c = 0; c < hd; ++c) dp += go[c] * vj[c];
        ds[j] = dp;
        dot += dp * pi[j];
        T* gv = dv + (j * n_kv + kvh) * hd;
        for (int64_t c = 0; c < hd; ++c) gv[c] += pi[j] * go[c];
      }
      const T* qi = q + (i * n_head + h) * hd;
      T* gq = dq + (i * n_head + h) * hd;
      for (int64_t j = 0; j <= i; ++j) {
        const T g = T(scale) * pi[j] * (ds[j] - dot);
        const T* kj = k + (j * n_kv + kvh) * hd;
        T* gk = dk + (j * n_kv + kvh) * hd;
        for (int64_t c = 0; c < hd; ++c) {
          gq[c] += g * kj[c];
          gk[c] += g * qi[c];
        }
      }
    }
  }
}

template void rmsnorm_forward<float>(const float*, const float*, int64_t, int64_t, double, float*);
template void rmsnorm_backward<float>(const float*, const float*, int64_t, int64_t, double, const float*, float*, float*);
template void swiglu_forward<float>(const float*, const float*, int64_t, float*);
template void swiglu_backward<float>(const float*, const float*, int64_t, const float*, float*, float*);
template void rope_apply<float>(float*, int64_t, int64_t, int64_t, const float*, const float*, bool, bool);
template void attention_forward<float>(const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, double,
                                     float*, float*);
template void attention_backward<float>(const float*, const float*, const float*, const float*, int64_t, int64_t, int64_t,
                                      int64_t, double, const float*, float*, float*, float*);
template void rmsnorm_forward<double>(const double*, const double*, int64_t, int64_t, double, double*);
template void rmsnorm_backward<double>(const double*, const double*, int64_t, int64_t, double, const double*, double*, double*);
template void swiglu_forward<double>(const double*, const double*, int64_t, double*);
template void swiglu_backward<double>(const double*, const double*, int64_t, const double*, double*, double*);
template void rope_apply<double>(double*, int64_t, int64_t, int64_t, const double*, const double*, bool, bool);
template void attention_forward<double>(const double*, const double*, const double*, int64_t, int64_t, int64_t, int64_t, double,
                                     double*, double*);
template void attention_backward<double>(const double*, const double*, const double*, const double*, int64_t, int64_t, int64_t,
                                      int64_t, double, const double*, double*, double*, double*);

}  // namespace lutq::train
