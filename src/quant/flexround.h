// FlexRound (Lee et al., arXiv 2306.00317): rounding decided by a learnable element-wise division.
//
// The quantizer of a uniform grid with step s1 and centre z (RTN's grid, quantize.h) is
//     c = clamp(round((w − z) / (s1 · S) + m), 0, 2^q − 1),   ŵ = z + s1 · (c − m),   m = (2^q − 1)/2
// with S = S2 ⊙ s3 ⊙ s4: S2 one scale per weight, s3 one per output row, s4 one per input column.
// s1 and z are per group (our format stores one step and one centre per group of g weights along
// k); they start at the RTN grid of the group (quant::quantize, rtn, importance-weighted when
// asked) and every S at 1, so training starts exactly at RTN. The weights themselves are never
// moved: the learned division only decides which grid point each weight rounds to, and the
// learned s1 and z move the grid.
//
// Layer-wise output reconstruction. The paper reconstructs a whole transformer block's output on
// calibration batches. Our pipeline quantizes one linear layer at a time with the second moment
// H = Σ x xᵀ of its calibration inputs (quant/hessian.h, what GPTQ uses), so the loss here is the
// layer's output error on all calibration tokens at once:
//     L = tr((W − Ŵ) H (W − Ŵ)ᵀ) / tr(W H Wᵀ) = Σ_t ‖x_t (W − Ŵ)ᵀ‖² / Σ_t ‖x_t Wᵀ‖²,
// which needs no activations (H suffices), no mini-batches (every step is a full-batch step on
// every calibration token) and no forward through the rest of the block. What it cannot see is
// how errors of the block's layers interact (and through the attention softmax/SiLU); that is
// the price of quantizing layer by layer.
//
// Training. round() passes the gradient straight through (STE: d round(u)/du = 1) and clamp()
// passes none for weights at the grid's ends. With ρ = round(u) − u, u = (w − z)/(s1·S) + m,
//     ∂ŵ/∂log s1 = s1·ρ, ∂ŵ/∂z = 1 − 1/S, ∂ŵ/∂log S = −(w − z)/S   (in range)
//     ∂ŵ/∂log s1 = s1·(c − m), ∂ŵ/∂z = 1, ∂ŵ/∂log S = 0              (clamped)
// and ∂L/∂Ŵ = −2 (W − Ŵ) H / tr(W H Wᵀ): one product (W − Ŵ)·H (n·k² multiply-adds, OpenBLAS
// SSYMM on fp32 copies) per step gives both the loss and the gradient. Adam updates log s1, the
// centre (in units of the group's initial step), log S2, log s3 and log s4; the learning rate
// decays linearly to a tenth. The forward uses the grid as stored (s1/2 and z rounded to fp16),
// so every step's loss is the loss of a storable matrix.
//
// Keeping the best. The loss is a sum over rows and a row's error depends on that row's codes
// and grid alone, so each row keeps the step at which its own error was lowest (its codes and
// grid; s4 is shared by all rows, but only through the codes it chose). Each row's candidate is
// then compared with the RTN start's row by the exact (double) row error
// (quant::row_calibrated_errors) and the better is kept, so FlexRound never loses to RTN on the
// layer's loss nor on any row's.
//
// Output: the uniform codes with centre stored as canonical BCQ exactly as RTN stores them
// (α_i = s1·2^(i−1) fp16-exact, z fp16), each code round((w − z)/(s1·S)) clamped against the
// stored grid.
//
// Cost per step: n·k² multiply-adds in fp32 plus O(n·k) element work on the pool. Memory: four
// n·k doubles (log S2, its gradient and two Adam moments) and two n·k fp32 buffers, plus H as fp32.
// Results do not depend on the pool's thread count (fixed row tiles, reductions in tile order;
// the product runs in OpenBLAS, whose own threading is configured outside).
#pragma once

#include <cstdint>
#include <span>

#include "core/status.h"
#include "format/bcq_matrix.h"

namespace lutq {
class ThreadPool;
}  // namespace lutq

namespace lutq::quant {

struct FlexRoundOptions {
  format::BcqConfig cfg;  // q, g; per-OC only; has_offset is forced on (uniform codes carry a centre)
  int iterations = 100;  // Adam steps (>= 0; 0 returns the RTN start)
  // Learning rates (> 0), chosen by a sweep on random and heavy-tailed 32×128 layers (q 2..4, with
  // and without importance): mean loss ratio to RTN 0.70 here, 0.81 at the first guess (5e-3, 2e-3).
  double lr_scale = 1e-3;  // of log S2, log s3, log s4
  double lr_grid = 3e-2;  // of log s1 and of the centre in units of its initial step
  // The RTN start weighted by diag(H) (quantize.h, importance) rather than plain range-covering.
  bool importance = false;
};

struct FlexRoundReport {
  double rtn_error = 0.0;  // calibrated_error of the RTN start
  double flex_error = 0.0;  // calibrated_error of the result
  int64_t rows_trained = 0;  // rows whose result came from training (the others kept the start)
  bool kept_flexround = false;  // rows_trained > 0
};

// Quantizes w[n*k] (row-major, finite, |w| <= 65504) against h[k*k] (the symmetric calibration
// second moment of the layer's inputs, finite). Rejects a bad shape or config, per-IC groups,
// compressed scales, a null h and bad option values with a message naming them.
Result<format::BcqMatrix> flexround(const float* w, int64_t n, int64_t k, const double* h,
                                    const FlexRoundOptions& opt, ThreadPool* pool = nullptr,
                                    FlexRoundReport* report = nullptr);

}  // namespace lutq::quant
