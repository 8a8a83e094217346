// Loss-aware clipping search for the plain per-OC fits (RTN, greedy, alternating; quantize.h).
//
// A fit that covers a group's whole range spends its few levels on the outliers; clipping the
// range trades the outliers' error for finer steps elsewhere. Which trade is right depends on what
// the layer's output sees, so the ratio is chosen per output row by the calibrated output error:
// for every candidate ratio t (default 1.0, 0.95, ..., 0.6) the whole matrix is fitted with
// QuantOptions::clip = t (each group's values clamped to its range shrunk by t toward its centre,
// fitted, and every weight given its nearest value on that grid), and each row keeps the ratio
// whose error e_r(t) = (w_r − ŵ_r) H (w_r − ŵ_r)ᵀ is lowest (ties keep the larger ratio). A row's
// error involves only its own weights, so choosing per row minimises the layer's
// tr((W − Ŵ) H (W − Ŵ)ᵀ) over all per-row choices. Ratio 1.0 (the plain fit) is always a
// candidate and the final comparison is exact (double), so no row, and not the layer, is ever
// worse than the plain fit on that loss.
//
// Cost. Per candidate: the fit (as quantize()) and one product Δ·H over row tiles, n·k²
// multiply-adds, in fp32 (OpenBLAS SSYMM on an fp32 copy of H, k² floats); then two products in
// double (the chosen and the plain matrix, row by row) to make the comparison exact. With the
// default 9 ratios that is 9 fp32 + 2 fp64 products per layer: SmolLM2-135M's block layers hold
// 30 × 2.9·10⁹ n·k² multiply-adds, so about 30 TFLOP-equivalent for the model; a 1.5B model
// (k up to 8960: ffn_down alone is 1536·8960² = 1.2·10¹¹ per product) about 50× that, which is
// hours on 2 cores rather than minutes — fewer ratios (ClipSearchOptions::ratios) cut it linearly.
// Memory: the best and the current matrix, a tile of Δ and ΔH, and H in fp32.
// Results do not depend on the pool's thread count.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"
#include "format/bcq_matrix.h"
#include "quant/quantize.h"

namespace lutq {
class ThreadPool;
}  // namespace lutq

namespace lutq::quant {

struct ClipSearchOptions {
  // Candidate ratios, each in (0, 1]; 1.0 is added when missing. Tried in descending order.
  std::vector<double> ratios = {1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6};
};

struct ClipSearchReport {
  std::vector<double> ratios;  // the candidates, descending (1.0 first)
  std::vector<int64_t> rows;  // rows that kept each ratio
  double plain_error = 0.0;  // calibrated error of the plain fit (ratio 1.0)
  double chosen_error = 0.0;  // of the result
};

// Quantizes w[n*k] per `opt` (per-OC; opt.clip is ignored: the search sets it) choosing each
// row's clipping ratio by its calibrated error against h[k*k] (symmetric, finite). importance:
// as quantize(). Rejects what quantize() rejects, per-IC groups, a null h and bad ratios.
// Compressed scales (opt.scale_bits) are fitted after the search, on the chosen matrix.
Result<format::BcqMatrix> clip_search(const float* w, int64_t n, int64_t k, const double* h, const QuantOptions& opt,
                                      const ClipSearchOptions& search = {}, ThreadPool* pool = nullptr,
                                      std::span<const double> importance = {}, ClipSearchReport* report = nullptr);

// Copies row r of a per-OC matrix (its bit-plane rows, scales and offsets) into `to`, which has
// the same shape and configuration.
namespace detail {
void copy_bcq_row(const format::BcqMatrix& from, format::BcqMatrix& to, int64_t r);
}  // namespace detail

// e_r = (w_r − ŵ_r) H (w_r − ŵ_r)ᵀ of every row r of a per-OC or per-IC matrix, from products
// over row tiles: in double with hf empty, else in fp32 with hf the fp32 copy of h.
std::vector<double> row_calibrated_errors(const float* w, const format::BcqMatrix& q, const double* h,
                                          std::span<const float> hf, ThreadPool* pool = nullptr);

}  // namespace lutq::quant
