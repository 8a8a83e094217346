// Ternary quantization W[n,k] -> scale[r] · t[r,c], t ∈ {−1, 0, +1} (format::TernaryMatrix), the
// input of the QMoE code (format/qmoe_code.h). One fp16 scale per output row: the QMoE kernel
// then sums ±x along a whole row and multiplies once, and the per-row scale costs 16/k bits.
//
// A row's grid is (s, t): ŵ = sign(w)·s where |w| > t, else 0.
//   kMse     the error-optimal ternary fit of the row: for every j, the j largest |w| get ±s with
//            s = their mean |w|, which minimises Σ(w − ŵ)² for that support; the best j wins
//            (at most (1 − min_zero_fraction)·k, so a sparsity floor can be asked for). The
//            threshold is t = max(s/2, midpoint of the j-th and (j+1)-th largest |w|), so the
//            nearest-value rounding of the grid reproduces the optimal support.
//   kMaxAbs  s = max |w|, t = s/2: the symmetric min-max grid with three levels, as in the
//            QMoE paper; mostly zeros for bell-shaped rows (|w| < max/2).
// s is rounded to fp16 before the symbols are chosen (the stored grid is what is rounded to).
//
// GPTQ-ternary: GPTQ's column sweep (quant/gptq.h, the factor from prepare_gptq, act_order
// honoured) with the row's ternary grid, fitted on the original row before the sweep (the row is
// one group, as GPTQ with g = k), and each weight rounded to the grid after the error feedback of
// the columns before it.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "format/qmoe_code.h"
#include "quant/gptq.h"

namespace lutq {
class ThreadPool;
}  // namespace lutq

namespace lutq::quant {

enum class TernaryScale : uint8_t { kMse = 0, kMaxAbs = 1 };

struct TernaryOptions {
  TernaryScale scale = TernaryScale::kMse;
  double min_zero_fraction = 0.0;  // kMse only: at least this share of each row is 0, in [0, 1]
};

// The (s, t) grid of one row w[k] (finite). s is fp16-representable.
struct TernaryGrid {
  float s = 0.0f;
  double t = 0.0;
};
TernaryGrid fit_ternary_row(const float* w, int64_t k, const TernaryOptions& opt);

// Round to nearest of the row grids (no calibration). w finite, |w| <= 65504.
Result<format::TernaryMatrix> ternary_rtn(const float* w, int64_t n, int64_t k, const TernaryOptions& opt,
                                          ThreadPool* pool = nullptr);

// GPTQ with the ternary grid; `factor` from prepare_gptq for this input (its act_order is used).
Result<format::TernaryMatrix> ternary_gptq(const float* w, int64_t n, int64_t k, const GptqFactor& factor,
                                           const TernaryOptions& opt, ThreadPool* pool = nullptr);

// tr((W − Ŵ) H (W − Ŵ)ᵀ) in double for a ternary Ŵ (h: [k][k]; its lower triangle is read).
double ternary_calibrated_error(const float* w, const format::TernaryMatrix& q, const double* h);

}  // namespace lutq::quant
