// GPTQ (Frantar et al., arXiv 2210.17323) for uniform and BCQ grids, per-OC and per-IC groups,
// and the AdaDim orientation choice by calibrated error.
//
// Given W[n,k] and the input second moment H = Σ x xᵀ (quant/hessian.h), GPTQ minimises
// tr((W − Ŵ) H (W − Ŵ)ᵀ) greedily: columns are quantized one at a time and each column's
// rounding error, scaled by the inverse-Hessian Cholesky factor U (UᵀU = H⁻¹, U upper), is
// pushed onto the columns not yet quantized:
//     e_r = (w_r,p − ŵ_r,p) / U_pp,     w_r,j −= e_r · U_pj   (j > p)
// Rows are independent given U, so the sweep runs over tiles of rows on the pool.
//
//   Preparation (prepare_gptq): dead columns (H_pp = 0: the input feature never fired) get
//     H_pp = 1, so they are rounded plainly and push no error anywhere (their weights are kept;
//     the reference implementation zeroes them, which is the same for the calibration loss but
//     not for inputs that do fire later). Damping λ = percdamp · mean(diag H) is added to the
//     diagonal. With act_order the columns are permuted by descending diag(H) (stable). H is
//     factored as H = Ũ Ũᵀ (Cholesky of the index-reversed matrix, Ũ upper) and U = Ũ⁻¹, which
//     is the upper Cholesky factor of H⁻¹ without forming H⁻¹. A pivot that is not positive
//     (below 1e-12 of its diagonal entry) or a non-finite factor is a failure: λ is raised ×10
//     (from 1e-6·mean diag when it was 0) and the factorisation retried, up to
//     max_damp_retries times; then an error. All in double.
//   Lazy batches: within a block of block_size columns updates are applied at once to the
//     block; the rest of the row receives the block's accumulated errors in one pass at the end
//     of the block (same arithmetic as the eager form up to summation order).
//   Grids. A group's grid (its α and offset, fitted by the method's group fitter from
//     group_fit.h: rtn = the exactly uniform fp16 grid with offset, greedy, alternating) is
//     fitted when the sweep enters the group, on the error-updated weights at that moment; each
//     weight then takes the nearest value of its group's stored (fp16) grid.
//       per-OC, no act_order: a group is g consecutive columns of one row; the block size is
//         rounded up to a multiple of g so a whole group is up to date when its first column
//         is reached.
//       per-OC with act_order and g < k ("static groups"): the sweep order no longer visits a
//         group's columns together, and the canonical format needs groups of consecutive
//         original columns, so every group's grid is fitted on the original W before the sweep
//         (as GPTQ's static_groups option); the sweep then only chooses codes against them.
//         With g = k the single group is fitted at the start either way.
//       per-IC (groups of g rows inside one column): the whole column is quantized at once, so
//         every (row group, column) grid is fitted on the updated column when the sweep reaches
//         it, with or without act_order; a tile of the sweep is one row group.
//   Importance (opt.importance): a per-OC group's grid is fitted to minimise Σ_j H_jj·(w_j − ŵ_j)²
//     over its columns (quantize.h), the diagonal of the undamped H (dead columns weigh 0);
//     per-IC groups sit in one column, where the weight is constant and changes nothing.
//   Compressed scales (opt.scale_bits 4..8, format/scale_codes.h): the lines' super scales and
//     offset ranges are chosen before the sweep (quant::fit_line_scales: each group's α in
//     canonical order, |α| descending, then format::encode_scales) from a fit of the weights the
//     groups will be fitted on: where every group is fitted on the original W (static groups,
//     per-OC with g = k) a plain quant::quantize of it (same method, config and importance);
//     elsewhere (per-OC without act-order, every per-IC group) a pilot sweep, the same GPTQ with
//     fp16 scales on the same factor, since the error feedback moves the weights the sweep
//     reaches late away from the original ones. The pilot costs a second sweep for those groups.
//     Each group's fitted α (sorted the same way) and z are then replaced by their codes,
//     rounded and refined by the code search of quant/scale_fit.h on the group's current
//     weights; where the fit leaves the line's scales (the coded sweep drifts from the pilot's),
//     the search also starts from that fit's codes for the group and keeps the better
//     (detail::code_fitted_set). The sweep chooses codes against the decoded grid.
//   The output is a canonical, validated format::BcqMatrix in the original column order.
//
// With H diagonal (e.g. I), U is diagonal and nothing propagates: GPTQ reduces to the same
// quantizer as quant::quantize with the same method and config (bit-for-bit: both fit the same
// values and choose the nearest stored grid value).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/status.h"
#include "format/bcq_matrix.h"
#include "quant/quantize.h"

namespace lutq {
class ThreadPool;
}  // namespace lutq

namespace lutq::quant {

struct GptqOptions {
  format::BcqConfig cfg;  // q, g, orientation, has_offset (forced on for rtn)
  Method method = Method::kRtn;  // how a group's grid is fitted
  int iterations = 10;  // alternating rounds
  double percdamp = 0.01;  // λ = percdamp · mean(diag H), >= 0
  int64_t block_size = 128;  // lazy-update block (columns), >= 1
  bool act_order = false;  // sweep columns by descending diag(H)
  int max_damp_retries = 8;  // ×10 damping increases after a failed Cholesky
  bool importance = false;  // per-OC grids fitted with the weights diag(H) (see above)
  int scale_bits = 0;  // 0: fp16 scales; 4..8: compressed scales (see above)
};

// The factored inverse Hessian of one input, reusable by every layer that reads that input
// (q/k/v, gate/up) when they use the same percdamp and act_order.
struct GptqFactor {
  int64_t k = 0;
  bool act_order = false;
  std::vector<int64_t> perm;  // sweep position -> original column
  std::vector<double> u;  // [k][k] upper: UᵀU = (P(H + λI)Pᵀ)⁻¹ in sweep order
  double damp = 0.0;  // λ used
  int damp_retries = 0;  // failed factorisations before it
  int64_t dead_columns = 0;
  std::vector<double> diag;  // diag(H) as given (original column order): the fits' importance
};

// Factors h[k*k] (symmetric, finite, diag >= 0; only the lower triangle is read) for GPTQ.
// LAPACK (OpenBLAS, its own threads) does the O(k³) work; the pool is not used here.
Result<GptqFactor> prepare_gptq(const double* h, int64_t k, const GptqOptions& opt, ThreadPool* pool = nullptr);

// Quantizes w[n*k] (row-major, finite, |w| <= 65504) with a factor from prepare_gptq (its
// act_order must equal opt.act_order). Rejects bad shapes/configs as quant::quantize does.
Result<format::BcqMatrix> gptq_quantize(const float* w, int64_t n, int64_t k, const GptqFactor& factor,
                                        const GptqOptions& opt, ThreadPool* pool = nullptr);

// The factor of one input, kept while the layers that read it (q/k/v, gate/up) are quantized:
// get() returns the held factor when the caller's key for the input, the Hessian's address, k and
// the options the factor depends on (percdamp, act_order, max_damp_retries) all match, and
// prepares (and holds) a new one otherwise. The key names the input (e.g. block and input kind),
// so storage reused for another block's Hessian is never mistaken for the same one.
class GptqFactorCache {
 public:
  Result<const GptqFactor*> get(uint64_t key, const double* h, int64_t k, const GptqOptions& opt);
  int64_t prepared() const { return prepared_; }  // factorisations done
  int64_t reused() const { return reused_; }

 private:
  uint64_t key_ = 0;
  const double* h_ = nullptr;
  double percdamp_ = 0.0;
  int max_damp_retries_ = 0;
  std::optional<GptqFactor> factor_;
  int64_t prepared_ = 0;
  int64_t reused_ = 0;
};

// prepare_gptq + gptq_quantize.
Result<format::BcqMatrix> gptq(const float* w, int64_t n, int64_t k, const double* h, const GptqOptions& opt,
                               ThreadPool* pool = nullptr);

// tr((W − Ŵ) H (W − Ŵ)ᵀ) = Σ_r Δ_r H Δ_rᵀ in double, Ŵ = format::dequantize(q) (h: [k][k]).
// With H = Σ x xᵀ this is ‖(W − Ŵ) Xᵀ‖²_F, the layer's output error on the calibration rows.
double calibrated_error(const float* w, const format::BcqMatrix& q, const double* h, ThreadPool* pool = nullptr);

// AdaDim: quantizes both ways and keeps the orientation with the lower calibrated error. With
// gptq.importance the plain quantizers (use_gptq false) are weighted by diag(H) too.
struct OrientationChoice {
  format::BcqMatrix matrix;  // the chosen one
  double error_per_oc = 0.0;  // calibrated_error of each candidate
  double error_per_ic = 0.0;
  format::Orientation chosen = format::Orientation::kPerOC;
};

struct OrientationOptions {
  bool use_gptq = true;  // false: plain quant::quantize (RTN/greedy/alternating) both ways
  GptqOptions gptq;  // cfg.orientation is overridden; cfg.g applies along k (per-OC) and n (per-IC)
  int64_t g_per_ic = 0;  // group size along n for the per-IC candidate; 0: gptq.cfg.g
  const GptqFactor* factor = nullptr;  // h's factor for gptq's options (GptqFactorCache); null: made here
};

// A candidate whose group size does not divide its extent is skipped (its error reported as
// +inf); both skipped is an error. Ties keep per-OC. By construction the chosen error is the
// minimum of the two reported, so never worse than the better fixed orientation.
Result<OrientationChoice> choose_orientation(const float* w, int64_t n, int64_t k, const double* h,
                                             const OrientationOptions& opt, ThreadPool* pool = nullptr);

}  // namespace lutq::quant
