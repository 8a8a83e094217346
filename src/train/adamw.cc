// AdamW (adamw.h): m = β1 m + (1−β1) g, v = β2 v + (1−β2) g², m̂ = m/(1−β1^t), v̂ = v/(1−β2^t),
// p -= lr_t (m̂ / (√v̂ + eps) + λ p).
#include "train/adamw.h"

#include <cmath>
#include <numbers>
#include <string>

namespace lutq::train {

double scheduled_lr(const AdamWOptions& o, int64_t t) {
  if (t < o.warmup_steps) return o.lr * double(t + 1) / double(o.warmup_steps);
  const int64_t span = o.total_steps - o.warmup_steps;
  const double floor = o.lr * o.min_lr_ratio;
  if (span <= 0 || t >= o.total_steps) return floor;
  const double progress = double(t - o.warmup_steps) / double(span);
  return floor + (o.lr - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

Status validate(const AdamWOptions& o) {
  if (!(o.lr > 0.0) || !std::isfinite(o.lr)) return Status::invalid("adamw: lr must be > 0, got " + std::to_string(o.lr));
  if (!(o.beta1 >= 0.0 && o.beta1 < 1.0) || !(o.beta2 >= 0.0 && o.beta2 < 1.0)) {
    return Status::invalid("adamw: betas must be in [0, 1)");
  }
  if (!(o.eps > 0.0)) return Status::invalid("adamw: eps must be > 0");
  if (!(o.weight_decay >= 0.0)) return Status::invalid("adamw: weight decay must be >= 0");
  if (o.warmup_steps < 0 || o.total_steps < 1 || o.warmup_steps > o.total_steps) {
    return Status::invalid("adamw: need 0 <= warm-up steps (" + std::to_string(o.warmup_steps) +
                           ") <= total steps (" + std::to_string(o.total_steps) + "), total >= 1");
  }
  if (!(o.min_lr_ratio >= 0.0 && o.min_lr_ratio <= 1.0)) return Status::invalid("adamw: min_lr_ratio must be in [0, 1]");
  return Status::ok();
}

AdamW::AdamW(size_t size, const AdamWOptions& options) : o_(options), m_(size, 0.0), v_(size, 0.0) {}

Status AdamW::restore(std::span<const double> m, std::span<const double> v, int64_t steps) {
  if (m.size() != m_.size() || v.size() != v_.size() || steps < 0) {
    return Status::invalid("adamw: moments of " + std::to_string(m.size()) + " and " + std::to_string(v.size()) +
                           " values for an optimizer of " + std::to_string(m_.size()));
  }
  m_.assign(m.begin(), m.end());
  v_.assign(v.begin(), v.end());
  t_ = steps;
  return Status::ok();
}

Status AdamW::step(std::span<float> params, std::span<const float> grads) {
  if (params.size() != m_.size() || grads.size() != m_.size()) {
    return Status::invalid("adamw: " + std::to_string(params.size()) + " parameters and " +
                           std::to_string(grads.size()) + " gradients for an optimizer of " + std::to_string(m_.size()));
  }
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!std::isfinite(grads[i])) return Status::invalid("adamw: gradient " + std::to_string(i) + " is not finite");
  }
  const double lr = scheduled_lr(o_, t_);
  ++t_;
  const double c1 = 1.0 - std::pow(o_.beta1, double(t_));
  const double c2 = 1.0 - std::pow(o_.beta2, double(t_));
  for (size_t i = 0; i < params.size(); ++i) {
    const double g = grads[i];
    m_[i] = o_.beta1 * m_[i] + (1.0 - o_.beta1) * g;
    v_[i] = o_.beta2 * v_[i] + (1.0 - o_.beta2) * g * g;
    const double update = (m_[i] / c1) / (std::sqrt(v_[i] / c2) + o_.eps) + o_.weight_decay * double(params[i]);
    params[i] = static_cast<float>(double(params[i]) - lr * update);
  }
  return Status::ok();
}

}  // namespace lutq::train
