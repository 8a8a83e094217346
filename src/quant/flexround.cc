// FlexRound training (quant/flexround.h): the RTN start, Adam on the layer-wise reconstruction
// loss, and the choice between the trained matrix and the start.
#include "quant/flexround.h"

#include <cmath>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "quant/clip_search.h"
#include "quant/flexround_problem.h"
#include "quant/gptq.h"
#include "quant/quantize.h"

namespace lutq::quant {
namespace {

using detail::FlexParams;

Status check_options(int64_t n, int64_t k, const double* h, const FlexRoundOptions& opt) {
  if (opt.cfg.orientation != format::Orientation::kPerOC) {
    return Status::invalid("flexround: per-OC groups only (its s1 and centre are per group along k)");
  }
  format::BcqConfig cfg = opt.cfg;
  cfg.has_offset = true;
  if (Status s = format::validate_config(cfg, n, k); !s) return Status::invalid("flexround: " + s.message());
  if (h == nullptr) return Status::invalid("flexround: needs the calibration second moment H (--calib)");
  if (opt.iterations < 0) {
    return Status::invalid("flexround: iterations=" + std::to_string(opt.iterations) + " must be >= 0");
  }
  if (!(opt.lr_scale > 0.0) || !std::isfinite(opt.lr_scale) || !(opt.lr_grid > 0.0) || !std::isfinite(opt.lr_grid)) {
    return Status::invalid("flexround: learning rates must be finite and > 0");
  }
  for (int64_t i = 0; i < k * k; ++i) {
    if (!std::isfinite(h[i])) return Status::invalid("flexround: H has a non-finite entry at " + std::to_string(i));
  }
  return Status::ok();
}

// Adam on one parameter vector: moments m, v; bias-corrected step of rate lr.
struct AdamState {
  std::vector<double> m, v;
};

void adam_step(std::vector<double>& x, const std::vector<double>& g, AdamState& st, double lr, int t,
               ThreadPool* pool) {
  constexpr double kBeta1 = 0.9;
  constexpr double kBeta2 = 0.999;
  constexpr double kEps = 1e-12;
  if (st.m.empty()) {
    st.m.assign(x.size(), 0.0);
    st.v.assign(x.size(), 0.0);
  }
  const double c1 = 1.0 - std::pow(kBeta1, t);
  const double c2 = 1.0 - std::pow(kBeta2, t);
  const auto body = [&](int64_t begin, int64_t end) {
    for (auto i = static_cast<size_t>(begin); i < static_cast<size_t>(end); ++i) {
      st.m[i] = kBeta1 * st.m[i] + (1.0 - kBeta1) * g[i];
      st.v[i] = kBeta2 * st.v[i] + (1.0 - kBeta2) * g[i] * g[i];
      x[i] -= lr * (st.m[i] / c1) / (std::sqrt(st.v[i] / c2) + kEps);
    }
  };
  const auto size = static_cast<int64_t>(x.size());
  if (pool != nullptr && size >= 4096) {
    pool->parallel_for(size, 1024, body);
  } else {
    body(0, size);
  }
}

// Trains from the problem's start; every row keeps its best step (FlexProblem::keep_best_rows).
void train(detail::FlexProblem& problem, const FlexRoundOptions& opt, ThreadPool* pool) {
  FlexParams p = problem.initial();
  FlexParams grad = FlexParams::zeros_like(p);
  problem.evaluate(p, &grad);
  problem.keep_best_rows(p);
  AdamState s1, shift, s2, s3, s4;
  for (int t = 1; t <= opt.iterations; ++t) {
    // Linear decay to a tenth of the rate over the run.
    const double decay = 1.0 - 0.9 * static_cast<double>(t - 1) / std::max(1, opt.iterations - 1);
    adam_step(p.log_s1, grad.log_s1, s1, opt.lr_grid * decay, t, pool);
    adam_step(p.shift, grad.shift, shift, opt.lr_grid * decay, t, pool);
    adam_step(p.log_s2, grad.log_s2, s2, opt.lr_scale * decay, t, pool);
    adam_step(p.log_s3, grad.log_s3, s3, opt.lr_scale * decay, t, pool);
    adam_step(p.log_s4, grad.log_s4, s4, opt.lr_scale * decay, t, pool);
    problem.evaluate(p, t < opt.iterations ? &grad : nullptr);
    problem.keep_best_rows(p);
  }
}

}  // namespace

Result<format::BcqMatrix> flexround(const float* w, int64_t n, int64_t k, const double* h,
                                    const FlexRoundOptions& opt, ThreadPool* pool, FlexRoundReport* report) {
  if (Status s = check_options(n, k, h, opt); !s) return s;
  QuantOptions ro;
  ro.method = Method::kRtn;
  ro.cfg = opt.cfg;
  ro.cfg.has_offset = true;
  std::vector<double> importance;
  if (opt.importance) {
    importance.resize(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) importance[static_cast<size_t>(i)] = h[i * k + i];
  }
  // Also checks the weights (finite, within fp16).
  Result<format::BcqMatrix> start = quantize(w, n, k, ro, pool, importance);
  if (!start) return Status(start.status().code(), "flexround: " + start.status().message());
  FlexRoundReport rep;
  rep.rtn_error = calibrated_error(w, *start, h, pool);
  if (opt.iterations == 0) {
    rep.flex_error = rep.rtn_error;
    if (report != nullptr) *report = rep;
    return start;
  }
  format::BcqMatrix trained;
  {
    detail::FlexProblem problem(w, n, k, h, *start, /*stored_grid=*/true, /*double_product=*/false, pool);
    train(problem, opt, pool);
    trained = problem.best_matrix();
  }
  // The exact row comparison with the start.
  const std::vector<double> e_start = row_calibrated_errors(w, *start, h, {}, pool);
  const std::vector<double> e_trained = row_calibrated_errors(w, trained, h, {}, pool);
  for (int64_t r = 0; r < n; ++r) {
    if (e_trained[static_cast<size_t>(r)] < e_start[static_cast<size_t>(r)]) {
      ++rep.rows_trained;
    } else {
      detail::copy_bcq_row(*start, trained, r);
    }
  }
  rep.kept_flexround = rep.rows_trained > 0;
  rep.flex_error = calibrated_error(w, trained, h, pool);
  if (report != nullptr) *report = rep;
  return trained;
}

}  // namespace lutq::quant
