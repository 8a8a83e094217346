// Internal to src/quant (and its tests): FlexRound's parameters, loss and gradient for one layer
// (quant/flexround.h has the method and the formulas).
#pragma once

#include <cstdint>
#include <vector>

#include "format/bcq_matrix.h"

namespace lutq {
class ThreadPool;
}  // namespace lutq

namespace lutq::quant::detail {

// The trainable parameters (and, in a gradient, their partial derivatives). Groups are per-OC:
// group j of row r is [r * groups + j].
struct FlexParams {
  std::vector<double> log_s1;  // [n * groups] log of the grid step
  std::vector<double> shift;  // [n * groups] centre = z0 + step0 · shift
  std::vector<double> log_s2;  // [n * k]
  std::vector<double> log_s3;  // [n]
  std::vector<double> log_s4;  // [k]

  // Same sizes, all zero.
  static FlexParams zeros_like(const FlexParams& p);
};

// A rounding held fixed: for the gradient check of the surrogate the backward differentiates
// (round(u) replaced by u + rho with rho frozen, the clamped weights held at their end code).
struct FrozenRounding {
  std::vector<double> rho;  // [n * k] round(u) − u where in range
  std::vector<int8_t> side;  // [n * k] 0: in range, −1: clamped at code 0, +1: at code 2^q − 1
};

class FlexProblem {
 public:
  // w[n*k], h[k*k] (both must outlive the problem); the start: an RTN matrix of w (per-OC,
  // offset, uniform α_i = α_0·2^i). stored_grid: the forward rounds s1/2 and z to fp16 as the
  // format stores them (training); false: continuous s1 and z (the gradient check).
  // double_product: (W − Ŵ)·H in double instead of fp32.
  FlexProblem(const float* w, int64_t n, int64_t k, const double* h, const format::BcqMatrix& start,
              bool stored_grid, bool double_product, ThreadPool* pool);

  FlexParams initial() const;  // exactly the start: S = 1, s1 and z from the start's grid

  // The loss L of the parameters (with `frozen`: of the surrogate) and, with grad != null, its
  // gradient (grad must have p's sizes; it is overwritten).
  double evaluate(const FlexParams& p, FlexParams* grad, const FrozenRounding* frozen = nullptr);
  // The rounding of p, for evaluate's `frozen`.
  FrozenRounding freeze(const FlexParams& p) const;
  // The stored matrix of p (canonical BCQ as RTN stores it).
  format::BcqMatrix to_matrix(const FlexParams& p) const;
  // After evaluate(p) without `frozen`: every row whose error is below its best so far keeps p's
  // codes and grid as its best (the loss is a sum over rows, each depending on its row alone).
  void keep_best_rows(const FlexParams& p);
  // The matrix of every row's best (the start's codes for a row never improved).
  format::BcqMatrix best_matrix() const;

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }

 private:
  struct Grid {
    double s1, z;
  };
  Grid grid(const FlexParams& p, int64_t set) const;
  // D = W − Ŵ for rows [r0, r1) (into delta_), with `frozen` where given.
  void residual_rows(const FlexParams& p, const FrozenRounding* frozen, int64_t r0, int64_t r1);
  void product();  // dh_ = delta_ · H
  // The gradient of rows [r0, r1) into grad; column partial sums into col_partial_[tile].
  void gradient_rows(const FlexParams& p, const FrozenRounding* frozen, FlexParams& grad, int64_t tile,
                     int64_t r0, int64_t r1);

  const float* w_;
  int64_t n_, k_, g_, groups_;
  int q_;
  const double* h_;
  bool stored_grid_, double_product_;
  ThreadPool* pool_;
  double norm_ = 1.0;  // tr(W H Wᵀ)
  std::vector<double> z0_, step0_;  // [n * groups] the start's grid
  std::vector<double> delta_, dh_;  // [n * k]
  std::vector<double> scale_;  // [n * k] S = S2 ⊙ s3 ⊙ s4 of the last residual_rows (one exp per weight)
  std::vector<float> hf_, delta_f_, dh_f_;  // fp32 copies for the fp32 product
  std::vector<double> row_err_;  // per row: its share of the last evaluate()'s loss (unnormalised)
  std::vector<uint8_t> codes_;  // [n * k] the last evaluate()'s codes
  std::vector<double> best_err_;  // per row: the lowest row error seen
  std::vector<uint8_t> best_codes_;  // [n * k]
  std::vector<double> best_a0_, best_z_;  // [n * groups] the stored grid of each row's best
  std::vector<double> col_partial_;  // [tiles][k] partial ∂L/∂log s4
};

}  // namespace lutq::quant::detail
