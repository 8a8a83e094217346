// The double-precision reference forward pass (see reference_forward.h).
#include "support/reference_forward.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace lutq::testing {
namespace {
std::vector<double> matvec(const std::vector<float>& w, const std::vector<double>& x, int64_t n, int64_t k) {
  std::vector<double> y(static_cast<size_t>(n), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) y[static_cast<size_t>(r)] += static_cast<double>(w[static_cast<size_t>(r * k + c)]) * x[static_cast<size_t>(c)];
  }
  return y;
}

std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<float>& w) {
  double ms = 0.0;
  for (double v : x) ms += v * v;
  ms /= static_cast<double>(x.size());
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(ms + 1e-5) * w[i];
  return y;
}

// y += b (a bias), when there is one.
void add_bias(std::vector<double>& y, const std::vector<float>& b) {
  for (size_t i = 0; i < b.size(); ++i) y[i] += b[i];
}

// Qwen3's q_norm / k_norm: RMSNorm over each head of hd values; OLMoE's: over the whole vector
// (its weight has as many values as x).
void head_rmsnorm(std::vector<double>& x, int64_t hd, const std::vector<float>& w) {
  if (w.empty()) return;
  if (w.size() == x.size()) hd = static_cast<int64_t>(x.size());
  for (size_t h = 0; h * static_cast<size_t>(hd) < x.size(); ++h) {
    const auto first = x.begin() + static_cast<int64_t>(h) * hd;
    const std::vector<double> head(first, first + hd);
    const std::vector<double> normed = rmsnorm(head, w);
    std::copy(normed.begin(), normed.end(), first);
  }
}

// q_embed = q·cos + rotate_half(q)·sin, rotate_half(x) = (−x[d/2:], x[:d/2]), per head.
void rope_hf(std::vector<double>& x, int64_t heads, int64_t hd, int64_t pos, const TinySpec& s,
             const std::vector<float>& freq_factors) {
  for (int64_t h = 0; h < heads; ++h) {
    double* v = x.data() + h * hd;
    for (int64_t i = 0; i < hd / 2; ++i) {
      double inv_freq = 1.0 / std::pow(s.rope_base, static_cast<double>(2 * i) / static_cast<double>(hd));
      if (!freq_factors.empty()) inv_freq /= freq_factors[static_cast<size_t>(i)];
      double p = static_cast<double>(pos);
      if (s.rope_scaling == "linear") p /= s.rope_factor;
      const double c = std::cos(p * inv_freq);
      const double sn = std::sin(p * inv_freq);
      const double a = v[i];
      const double b = v[i + hd / 2];
      v[i] = a * c - b * sn;
      v[i + hd / 2] = b * c + a * sn;
    }
  }
}

// silu(g·h) ⊙ (u·h), then d·that: one SwiGLU expert of width ff.
std::vector<double> swiglu_mlp(const std::vector<float>& g, const std::vector<float>& u, const std::vector<float>& d,
                               const std::vector<double>& h, int64_t ff, int64_t e) {
  std::vector<double> a = matvec(g, h, ff, e);
  const std::vector<double> b = matvec(u, h, ff, e);
  for (size_t c = 0; c < a.size(); ++c) a[c] = a[c] / (1.0 + std::exp(-a[c])) * b[c];
  return matvec(d, a, e, ff);
}

// The sparse-MoE block of Hugging Face's Mixtral / Qwen2-MoE / Qwen3-MoE / OLMoE: routing
// probabilities softmax(router · h), the top-k of them (renormalised over the k when the family
// sets norm_topk_prob; Mixtral's softmax over the top-k logits is the same thing), the weighted
// sum of those experts, plus Qwen2-MoE's shared expert gated by sigmoid(gate · h).
std::vector<double> moe_ffn(const TinySpec& s, const TinyWeights::Layer& L, const std::vector<double>& h) {
  const int64_t e = s.n_embd;
  const std::vector<double> z = matvec(L.router, h, s.n_expert, e);
  const double mx = *std::max_element(z.begin(), z.end());
  std::vector<double> p(z.size());
  double sum = 0.0;
  for (size_t i = 0; i < z.size(); ++i) sum += (p[i] = std::exp(z[i] - mx));
  for (double& v : p) v /= sum;
  std::vector<size_t> order(p.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  order.resize(static_cast<size_t>(s.n_expert_used));
  double chosen = 0.0;
  for (size_t i : order) chosen += p[i];
  std::vector<double> y(static_cast<size_t>(e), 0.0);
  const int64_t ff = tiny_expert_ff(s);
  for (size_t i : order) {
    const double w = tiny_expert_weights_norm(s) ? p[i] / chosen : p[i];
    const std::vector<double> o = swiglu_mlp(L.eg[i], L.eu[i], L.ed[i], h, ff, e);
    for (size_t c = 0; c < y.size(); ++c) y[c] += w * o[c];
  }
  if (!L.sg.empty()) {
    double g = 0.0;
    for (int64_t c = 0; c < e; ++c) g += static_cast<double>(L.shexp_gate[static_cast<size_t>(c)]) * h[static_cast<size_t>(c)];
    g = 1.0 / (1.0 + std::exp(-g));
    const std::vector<double> o = swiglu_mlp(L.sg, L.su, L.sd, h, s.n_ff_shexp, e);
    for (size_t c = 0; c < y.size(); ++c) y[c] += g * o[c];
  }
  return y;
}

}  // namespace

std::vector<std::vector<double>> reference_logits(const Tiny& t, const std::vector<int32_t>& tokens,
                                                  ReferenceTrace* trace) {
  const TinySpec& s = t.spec;
  const int64_t e = s.n_embd;
  const int64_t hd = tiny_head_dim(s);
  const auto T = static_cast<int64_t>(tokens.size());
  std::vector<std::vector<double>> x(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) {
    const float* row = t.w.embd.data() + tokens[static_cast<size_t>(i)] * e;
    x[static_cast<size_t>(i)].assign(row, row + e);
  }
  for (const TinyWeights::Layer& L : t.w.layers) {
    std::vector<std::vector<double>> q(static_cast<size_t>(T)), k(q.size()), v(q.size());
    for (int64_t i = 0; i < T; ++i) {
      const std::vector<double> h = rmsnorm(x[static_cast<size_t>(i)], L.attn_norm);
      q[static_cast<size_t>(i)] = matvec(L.wq, h, s.n_head * hd, e);
      k[static_cast<size_t>(i)] = matvec(L.wk, h, s.n_head_kv * hd, e);
      v[static_cast<size_t>(i)] = matvec(L.wv, h, s.n_head_kv * hd, e);
      add_bias(q[static_cast<size_t>(i)], L.bq);
      add_bias(k[static_cast<size_t>(i)], L.bk);
      add_bias(v[static_cast<size_t>(i)], L.bv);
      head_rmsnorm(q[static_cast<size_t>(i)], hd, L.q_norm);
      head_rmsnorm(k[static_cast<size_t>(i)], hd, L.k_norm);
      rope_hf(q[static_cast<size_t>(i)], s.n_head, hd, i, s, t.w.freq_factors);
      rope_hf(k[static_cast<size_t>(i)], s.n_head_kv, hd, i, s, t.w.freq_factors);
    }
    for (int64_t i = 0; i < T; ++i) {
      std::vector<double> att(static_cast<size_t>(s.n_head * hd), 0.0);
      for (int64_t h = 0; h < s.n_head; ++h) {
        const int64_t g = h / (s.n_head / s.n_head_kv);  // repeat_kv
        std::vector<double> sc(static_cast<size_t>(i + 1));
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          double d = 0.0;
          for (int64_t c = 0; c < hd; ++c) d += q[static_cast<size_t>(i)][static_cast<size_t>(h * hd + c)] * k[static_cast<size_t>(j)][static_cast<size_t>(g * hd + c)];
          sc[static_cast<size_t>(j)] = d / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, sc[static_cast<size_t>(j)]);
        }
        double sum = 0.0;
        for (double& z : sc) sum += (z = std::exp(z - mx));
        for (int64_t j = 0; j <= i; ++j) {
          for (int64_t c = 0; c < hd; ++c) att[static_cast<size_t>(h * hd + c)] += sc[static_cast<size_t>(j)] / sum * v[static_cast<size_t>(j)][static_cast<size_t>(g * hd + c)];
        }
      }
      const std::vector<double> o = matvec(L.wo, att, e, s.n_head * hd);
      for (int64_t c = 0; c < e; ++c) x[static_cast<size_t>(i)][static_cast<size_t>(c)] += o[static_cast<size_t>(c)];
    }
    if (trace != nullptr) trace->ffn_in.emplace_back();
    for (int64_t i = 0; i < T; ++i) {
      const std::vector<double> h = rmsnorm(x[static_cast<size_t>(i)], L.ffn_norm);
      if (trace != nullptr) trace->ffn_in.back().push_back(h);
      const std::vector<double> d = s.n_expert > 0 ? moe_ffn(s, L, h) : swiglu_mlp(L.wg, L.wu, L.wd, h, s.n_ff, e);
      for (int64_t c = 0; c < e; ++c) x[static_cast<size_t>(i)][static_cast<size_t>(c)] += d[static_cast<size_t>(c)];
    }
  }
  std::vector<std::vector<double>> logits;
  for (int64_t i = 0; i < T; ++i) {
    logits.push_back(matvec(s.tied ? t.w.embd : t.w.out, rmsnorm(x[static_cast<size_t>(i)], t.w.out_norm), s.n_vocab, e));
  }
  return logits;
}

}  // namespace lutq::testing
