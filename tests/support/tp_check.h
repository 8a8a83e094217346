// The bound the sharded forward pass must meet against the single-process one (docs/scale-out.md,
// "Exactness"). Sharding changes only the order of fp32 sums: a row-split layer's dot products of
// length K are summed per rank and the partial sums added by the all-reduce. Any two orders of a
// K-term fp32 sum differ by at most 2·γ_K·Σ|terms| with γ_K = K·u/(1 − K·u), u = 2^-24; the
// terms are bounded by the logits' scale, and each of the n_layer layers adds such a perturbation
// (two row-split sums per layer) that the later layers carry to the logits. We allow a factor
// of 4 for that propagation (RMS norms rescale, they do not amplify beyond the weights' norm):
//
//   |logit_sharded − logit_single| <= 4 · n_layer · 2 · 2·γ_K · max(1, max|logit|),  K = max(q_dim, n_ff)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace lutq::testing {

inline double tp_logit_bound(const model::ModelConfig& full, const std::vector<float>& reference) {
  const double u = std::ldexp(1.0, -24);
  const double k = static_cast<double>(std::max(full.q_dim(), full.n_ff));
  const double gamma = k * u / (1.0 - k * u);
  double scale = 1.0;
  for (float v : reference) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  return 4.0 * static_cast<double>(full.n_layer) * 2.0 * 2.0 * gamma * scale;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  }
  return d;
}

}  // namespace lutq::testing
