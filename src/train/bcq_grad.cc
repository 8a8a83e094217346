// Scale gradients of a BCQ layer (bcq_grad.h).
#include "train/bcq_grad.h"

#include <cblas.h>

#include <cmath>
#include <string>

#include "core/fp16.h"

namespace lutq::train {
namespace {

Status check_sizes(const format::BcqMatrix& w, const ScaleParams& p, const char* what) {
  const auto sets = static_cast<size_t>(w.num_scale_sets());
  const size_t want_offsets = w.cfg.has_offset ? sets : 0;
  if (p.alpha.size() != sets * static_cast<size_t>(w.cfg.q) || p.offset.size() != want_offsets) {
    return Status::invalid(std::string(what) + ": " + std::to_string(p.alpha.size()) + " scales and " +
                           std::to_string(p.offset.size()) + " offsets for a " + format::describe(w) +
                           " matrix, which has " + std::to_string(sets * static_cast<size_t>(w.cfg.q)) + " and " +
                           std::to_string(want_offsets));
  }
  return Status::ok();
}

}  // namespace

ScaleParams scales_of(const format::BcqMatrix& w) {
  ScaleParams p;
  p.alpha.reserve(w.alpha.size());
  for (const uint16_t h : w.alpha) p.alpha.push_back(fp16_to_fp32(h));
  for (const uint16_t h : w.offset) p.offset.push_back(fp16_to_fp32(h));
  return p;
}

Status store_scales(const ScaleParams& p, format::BcqMatrix& w) {
  if (Status s = check_sizes(w, p, "store_scales"); !s) return s;
  for (size_t i = 0; i < p.alpha.size(); ++i) {
    if (!std::isfinite(p.alpha[i]) || std::fabs(p.alpha[i]) > 65504.0f) {
      return Status::invalid("store_scales: scale " + std::to_string(i) + " = " + std::to_string(p.alpha[i]) +
                             " does not fit fp16 (training diverged?)");
    }
  }
  for (size_t i = 0; i < p.offset.size(); ++i) {
    if (!std::isfinite(p.offset[i]) || std::fabs(p.offset[i]) > 65504.0f) {
      return Status::invalid("store_scales: offset " + std::to_string(i) + " does not fit fp16");
    }
  }
  for (size_t i = 0; i < p.alpha.size(); ++i) w.alpha[i] = fp32_to_fp16(p.alpha[i]);
  for (size_t i = 0; i < p.offset.size(); ++i) w.offset[i] = fp32_to_fp16(p.offset[i]);
  w.codes = {};  // trained scales are fp16: compressed scales (format/scale_codes.h) are dropped
  return Status::ok();
}

std::vector<float> dequantize_with(const format::BcqMatrix& w, const ScaleParams& p) {
  const int q = w.cfg.q;
  std::vector<float> out(static_cast<size_t>(w.n * w.k));
  for (int64_t r = 0; r < w.n; ++r) {
    for (int64_t c = 0; c < w.k; ++c) {
      const int64_t s = w.scale_set(r, c);
      double v = p.offset.empty() ? 0.0 : double(p.offset[static_cast<size_t>(s)]);
      for (int i = 0; i < q; ++i) {
        const double a = p.alpha[static_cast<size_t>(s * q + i)];
        v += w.bit(i, r, c) ? a : -a;
      }
      out[static_cast<size_t>(r * w.k + c)] = static_cast<float>(v);
    }
  }
  return out;
}

Status bcq_linear_backward(const format::BcqMatrix& w, const ScaleParams& p, const float* x, const float* dy,
                           int64_t m, float* dx, ScaleParams& grad) {
  if (Status s = check_sizes(w, p, "bcq_linear_backward (scales)"); !s) return s;
  if (Status s = check_sizes(w, grad, "bcq_linear_backward (gradients)"); !s) return s;
  if (m < 1) return Status::invalid("bcq_linear_backward: m = " + std::to_string(m) + " rows");
  const auto n = static_cast<int>(w.n), k = static_cast<int>(w.k), rows = static_cast<int>(m);
  if (dx != nullptr) {
    const std::vector<float> wf = dequantize_with(w, p);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, k, n, 1.0f, dy, n, wf.data(), k, 0.0f, dx, k);
  }
  std::vector<float> g(static_cast<size_t>(w.n * w.k));  // G = dyᵀ x
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, k, rows, 1.0f, dy, n, x, k, 0.0f, g.data(), k);
  return reduce_scale_grad(w, g.data(), grad);
}

Status reduce_scale_grad(const format::BcqMatrix& w, const float* g, ScaleParams& grad) {
  if (Status s = check_sizes(w, grad, "reduce_scale_grad"); !s) return s;
  const int q = w.cfg.q;
  for (int64_t r = 0; r < w.n; ++r) {
    for (int64_t c = 0; c < w.k; ++c) {
      const int64_t s = w.scale_set(r, c);
      const float gv = g[r * w.k + c];
      if (!grad.offset.empty()) grad.offset[static_cast<size_t>(s)] += gv;
      for (int i = 0; i < q; ++i) grad.alpha[static_cast<size_t>(s * q + i)] += w.bit(i, r, c) ? gv : -gv;
    }
  }
  return Status::ok();
}

}  // namespace lutq::train
