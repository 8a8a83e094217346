#include "model/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace lutq::model {
namespace {

constexpr int64_t kAttentionMinParallelFlops = int64_t{1} << 18;

}  // namespace

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float mean = static_cast<float>(ss / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * w[i];
}

RopeTable make_rope_table(const RopeConfig& rope, int64_t start_pos, int64_t count) {
  RopeTable t;
  t.half_dim = rope.dim / 2;
  t.cos.resize(static_cast<size_t>(count * t.half_dim));
  t.sin.resize(t.cos.size());
  std::vector<double> inv_freq(static_cast<size_t>(t.half_dim));
  for (int64_t i = 0; i < t.half_dim; ++i) {
    double f = std::pow(rope.freq_base, -2.0 * static_cast<double>(i) / static_cast<double>(rope.dim));
    if (rope.scaling == RopeScalingType::kFreqFactors) f /= rope.freq_factors[static_cast<size_t>(i)];
    if (rope.scaling == RopeScalingType::kLinear) f /= rope.linear_factor;
    inv_freq[static_cast<size_t>(i)] = f;
  }
  for (int64_t p = 0; p < count; ++p) {
    const auto pos = static_cast<double>(start_pos + p);
    for (int64_t i = 0; i < t.half_dim; ++i) {
      const double theta = pos * inv_freq[static_cast<size_t>(i)];
      t.cos[static_cast<size_t>(p * t.half_dim + i)] = static_cast<float>(std::cos(theta));
      t.sin[static_cast<size_t>(p * t.half_dim + i)] = static_cast<float>(std::sin(theta));
    }
  }
  return t;
}

void apply_rope(float* x, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin, int64_t half_dim) {
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < half_dim; ++i) {
      const float x0 = v[2 * i];
      const float x1 = v[2 * i + 1];
      v[2 * i] = x0 * cos[i] - x1 * sin[i];
      v[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
    }
  }
}

void softmax(float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const auto inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

float dot_scalar(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy_scalar(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void attention(const float* q, const float* k_cache, const float* v_cache, int64_t m, int64_t start_pos,
               const AttentionShape& shape, float* out, ThreadPool& pool, bool use_avx2) {
  const int64_t hd = shape.head_dim;
  const int64_t q_stride = shape.n_head * hd;
  const int64_t kv_stride = shape.n_head_kv * hd;
  const int64_t n_rep = shape.n_head / shape.n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t items = m * shape.n_head;
  auto* dot = use_avx2 ? &dot_avx2 : &dot_scalar;
  auto* axpy = use_avx2 ? &axpy_avx2 : &axpy_scalar;
  const auto body = [&](int index, int count) {
    if (index >= items) return;
    std::vector<float> scores(static_cast<size_t>(start_pos + m));
    // Strided (not contiguous) items: later tokens see more keys, so this balances causal work.
    for (int64_t item = index; item < items; item += count) {
      const int64_t t = item / shape.n_head;
      const int64_t h = item % shape.n_head;
      const int64_t kvh = h / n_rep;
      const int64_t n_keys = start_pos + t + 1;
      const float* qh = q + t * q_stride + h * hd;
      for (int64_t j = 0; j < n_keys; ++j) {
        scores[static_cast<size_t>(j)] = dot(qh, k_cache + j * kv_stride + kvh * hd, hd) * scale;
      }
      softmax(scores.data(), n_keys);
      float* oh = out + t * q_stride + h * hd;
      std::fill(oh, oh + hd, 0.0f);
      for (int64_t j = 0; j < n_keys; ++j) axpy(scores[static_cast<size_t>(j)], v_cache + j * kv_stride + kvh * hd, oh, hd);
    }
  };
  // Small problems (decode at short context) stay on the calling thread: a pool round trip costs
  // more than the work, and much more when the other cores are busy.
  const int64_t flops = items * (start_pos + m) * hd * 4;
  if (pool.size() == 1 || flops < kAttentionMinParallelFlops) {
    body(0, 1);
  } else {
    pool.run(body);
  }
}

}  // namespace lutq::model
