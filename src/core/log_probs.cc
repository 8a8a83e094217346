#include "core/log_probs.h"

#include <algorithm>
#include <cmath>

namespace lutq {

void log_softmax(std::span<const float> logits, std::span<float> out) {
  float mx = -INFINITY;
  for (float v : logits) mx = std::max(mx, v);
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - static_cast<double>(mx));
  const double lse = static_cast<double>(mx) + std::log(sum);
  for (size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<float>(static_cast<double>(logits[i]) - lse);
}

double kl_divergence(std::span<const float> base_log_probs, std::span<const float> log_probs) {
  double kl = 0.0;
  for (size_t i = 0; i < base_log_probs.size(); ++i) {
    const double lb = base_log_probs[i];
    const double p = std::exp(lb);
    if (p > 0.0) kl += p * (lb - static_cast<double>(log_probs[i]));
  }
  return std::max(kl, 0.0);
}

}  // namespace lutq
