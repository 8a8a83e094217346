#include "gen/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace lutq::gen {

int32_t argmax(std::span<const float> values) {
  int32_t best = -1;
  for (size_t i = 0; i < values.size(); ++i) {
    const float v = values[i];
    if (!std::isfinite(v)) continue;
    if (best < 0 || v > values[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  return best < 0 ? 0 : best;
}

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {}

int32_t Sampler::sample(std::span<const float> logits) {
  const int32_t greedy = argmax(logits);
  if (options_.temperature <= 0.0f) return greedy;
  if (options_.top_k == 1) return greedy;

  // Candidates: finite logits, sorted by descending logit (ties: lower index first).
  order_.clear();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isfinite(logits[i])) order_.push_back(static_cast<int32_t>(i));
  }
  if (order_.empty()) return greedy;
  auto by_logit = [&logits](int32_t a, int32_t b) {
    const float la = logits[static_cast<size_t>(a)];
    const float lb = logits[static_cast<size_t>(b)];
    return la > lb || (la == lb && a < b);
  };
  size_t keep = order_.size();
  if (options_.top_k > 0 && static_cast<size_t>(options_.top_k) < keep) {
    keep = static_cast<size_t>(options_.top_k);
    std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(keep), order_.end(), by_logit);
    order_.resize(keep);
  } else {
    std::sort(order_.begin(), order_.end(), by_logit);
  }

  // Softmax over the candidates at the temperature, max subtracted (no overflow).
  const double inv_t = 1.0 / static_cast<double>(options_.temperature);
  const double top = static_cast<double>(logits[static_cast<size_t>(order_[0])]);
  probs_.resize(keep);
  double sum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    probs_[i] = std::exp((static_cast<double>(logits[static_cast<size_t>(order_[i])]) - top) * inv_t);
    sum += probs_[i];
  }
  // Nucleus: the smallest prefix whose probability reaches top_p (at least one token).
  if (options_.top_p < 1.0f) {
    const double target = static_cast<double>(options_.top_p) * sum;
    double acc = 0.0;
    size_t n = 0;
    while (n < keep) {
      acc += probs_[n];
      ++n;
      if (acc >= target) break;
    }
    keep = n;
    sum = acc;
  }
  if (keep == 1) return order_[0];
  std::uniform_real_distribution<double> u(0.0, sum);
  const double r = u(rng_);
  double acc = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    acc += probs_[i];
    if (r < acc) return order_[i];
  }
  return order_[keep - 1];
}

}  // namespace lutq::gen
