#include "model/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace lutq::model {

OpIsa op_isa(kernels::Isa isa, const CpuFeatures& cpu) {
  OpIsa ops;
  ops.isa = isa;
  if (isa == kernels::Isa::kRef || isa == kernels::Isa::kScalar || !cpu.avx2) return ops;
  ops.avx2 = true;
  const std::vector<kernels::Int8Isa> int8 = kernels::int8_isas(cpu);  // ascending, scalar first
  for (kernels::Int8Isa i : int8) {
    if (isa == kernels::Isa::kAvx2 && i == kernels::Int8Isa::kAvx512Vnni) continue;
    ops.int8 = i;
  }
  return ops;
}

const char* op_isa_name(const OpIsa& ops) { return ops.avx2 ? "avx2" : "scalar"; }

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float mean = static_cast<float>(ss / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * w[i];
}

void rms_norm_rows(const float* x, const float* w, int64_t m, int64_t e, float eps, float* out) {
  for (int64_t t = 0; t < m; ++t) rms_norm(x + t * e, w, e, eps, out + t * e);
}

RopeTable make_rope_table(const RopeConfig& rope, std::span<const int64_t> positions) {
  RopeTable t;
  t.half_dim = rope.dim / 2;
  const auto count = static_cast<int64_t>(positions.size());
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
    const auto pos = static_cast<double>(positions[static_cast<size_t>(p)]);
    for (int64_t i = 0; i < t.half_dim; ++i) {
      const double theta = pos * inv_freq[static_cast<size_t>(i)];
      t.cos[static_cast<size_t>(p * t.half_dim + i)] = static_cast<float>(std::cos(theta));
      t.sin[static_cast<size_t>(p * t.half_dim + i)] = static_cast<float>(std::sin(theta));
    }
  }
  return t;
}

RopeTable make_rope_table(const RopeConfig& rope, int64_t start_pos, int64_t count) {
  std::vector<int64_t> positions(static_cast<size_t>(count));
  for (int64_t p = 0; p < count; ++p) positions[static_cast<size_t>(p)] = start_pos + p;
  return make_rope_table(rope, positions);
}

void apply_rope(float* x, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin, int64_t half_dim,
                RopeMode mode) {
  // kNormal rotates (x[2i], x[2i+1]); kNeox rotates (x[i], x[i + half_dim]).
  const int64_t step = mode == RopeMode::kNormal ? 2 : 1;
  const int64_t partner = mode == RopeMode::kNormal ? 1 : half_dim;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < half_dim; ++i) {
      float* a = v + step * i;
      const float x0 = a[0];
      const float x1 = a[partner];
      a[0] = x0 * cos[i] - x1 * sin[i];
      a[partner] = x0 * sin[i] + x1 * cos[i];
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

void attend_head(const float* q, const float* k, const float* v, int64_t n_keys, int64_t kv_stride, int64_t head_dim,
                 float scale, float* scores, float* out, bool avx2) {
  auto* dot = avx2 ? &dot_avx2 : &dot_scalar;
  auto* axpy = avx2 ? &axpy_avx2 : &axpy_scalar;
  for (int64_t j = 0; j < n_keys; ++j) scores[j] = dot(q, k + j * kv_stride, head_dim) * scale;
  softmax(scores, n_keys);
  std::fill(out, out + head_dim, 0.0f);
  for (int64_t j = 0; j < n_keys; ++j) axpy(scores[j], v + j * kv_stride, out, head_dim);
}

}  // namespace lutq::model
