// AdamW (decoupled weight decay) with linear warm-up and cosine decay, for the scales and offsets
// that `lutq tune` trains (issue 14). One optimizer per parameter tensor: it keeps the first and
// second moments of each element.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"

namespace lutq::train {

struct AdamWOptions {
  double lr = 1e-4;  // peak learning rate
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // scales are not decayed by default
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;  // cosine decay from the end of warm-up to 0 at total_steps
  double min_lr_ratio = 0.0;  // floor of the cosine, as a fraction of lr
};

// The learning rate of step t (0-based): lr·(t+1)/warmup during warm-up, then a cosine from lr
// down to lr·min_lr_ratio at total_steps, and that floor afterwards.
double scheduled_lr(const AdamWOptions& o, int64_t t);

// Checks the options: lr > 0, betas in [0, 1), eps > 0, decay >= 0, steps consistent.
Status validate(const AdamWOptions& o);

class AdamW {
 public:
  AdamW(size_t size, const AdamWOptions& options);
  // One update of params from grads (same size as the constructor's). Error: size mismatch or
  // a non-finite gradient (params unchanged).
  Status step(std::span<float> params, std::span<const float> grads);
  int64_t steps() const { return t_; }
  // The moments (for a checkpoint of the run) and their restoration: the next step() then does
  // what it would have done in the run that saved them. Error: sizes other than this optimizer's.
  std::span<const double> first_moment() const { return m_; }
  std::span<const double> second_moment() const { return v_; }
  Status restore(std::span<const double> m, std::span<const double> v, int64_t steps);

 private:
  AdamWOptions o_;
  std::vector<double> m_, v_;
  int64_t t_ = 0;
};

}  // namespace lutq::train
