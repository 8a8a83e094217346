// Fitting against compressed scales (format/scale_codes.h): the bits of every weight are chosen
// against the decoded scales, so the matrix a quantizer measures is the one the file holds.
//
// compress_scales (after quantize()'s fp16 fit): each line's super scales and offset range come
// from format::encode_scales; every group then starts from its rounded codes and runs a
// coordinate search (CodeSearch): each plane's code ± 1 (all planes' together where the fp16 fit's
// scales are uniform, so they stay uniform) and the offset code ± 1, a change kept
// only when it lowers the group's (weighted) squared error, repeated while a pass improves (at
// most kMaxPasses); each weight takes the nearest value of the decoded grid. The error is never
// above that of the rounded codes. GPTQ (gptq.h) takes the lines' super scales and ranges from a
// fit before its sweep (fit_line_scales, line_scales) and runs the same search on each group when
// it is fitted.
#pragma once

#include <cstdint>
#include <span>

#include "core/status.h"
#include "format/bcq_matrix.h"
#include "quant/group_fit.h"
#include "quant/quantize.h"

namespace lutq {
class ThreadPool;
}  // namespace lutq

namespace lutq::quant {

// Compresses m's scales to b-bit codes and re-chooses codes and bits against the decoded grids.
// w[n*k]: the weights m was fitted to; importance: empty or k weights (per-OC groups; per-IC
// groups lie in one input channel, where a weight changes nothing).
Status compress_scales(const float* w, std::span<const double> importance, int bits, format::BcqMatrix& m,
                       ThreadPool* pool = nullptr);

// GPTQ's line scales: the super scales, offset ranges and rounded codes of `bits`-bit codes for a
// BCQ fit m (fit_line_scales) or for a plain fit (opt, importance as for quantize()) of the
// weights w[n*k] (line_scales). Each set's α is taken in canonical plane order, |α| descending
// (plane 0 the largest): the planes of a group are interchangeable and the fits return them in
// different orders (the greedy fit largest first, the grid starts largest last), so a line's
// per-plane super scale is only meaningful for a fixed order. The codes are those of the sorted
// α; the bits of m are not reordered (GPTQ replaces codes and bits in its sweep).
Result<format::ScaleCodes> fit_line_scales(const format::BcqMatrix& m, int bits);
Result<format::ScaleCodes> line_scales(const float* w, int64_t n, int64_t k, const QuantOptions& opt,
                                       std::span<const double> importance, int bits, ThreadPool* pool = nullptr);

namespace detail {

// One line's shared values: q fp16 super scales, and the offset range (with an offset).
struct LineScales {
  const uint16_t* super = nullptr;
  uint16_t zmin = 0;
  uint16_t zmax = 0;
};

class CodeSearch {
 public:
  static constexpr int kMaxPasses = 4;
  // Searches the codes of one group v[len] (weights d[len], nullable) from alpha_code[q] and
  // *offset_code (in/out; offset_code ignored without an offset), at most `passes` passes (0:
  // the given codes as they are). Writes each element's grid code (bit i = plane i) to elem[len]
  // and returns the (weighted) squared error. `tied`: the q α codes are equal and move together
  // (uniform scales, format::has_uniform_scales, stay uniform).
  double run(const float* v, const double* d, int64_t len, int q, int bits, bool with_offset, const LineScales& line,
             uint8_t* alpha_code, uint8_t* offset_code, uint8_t* elem, int passes = kMaxPasses, bool tied = false);

 private:
  // The error of the grid the codes decode to; writes element codes when elem is not null.
  double eval(const float* v, const double* d, int64_t len, int q, int bits, bool with_offset, const LineScales& line,
              const uint8_t* alpha_code, uint8_t offset_code, uint8_t* elem);
  ValueGrid grid_;
};

// Searches the codes of scale set `set` of m (values v[len], weights d, nullable) from the codes
// m holds for it, and stores the searched codes and their decoded scales in m and each element's
// grid code in elem[len] (the bits are left to the caller).
void search_set(format::BcqMatrix& m, int64_t set, const float* v, const double* d, int64_t len, CodeSearch& search,
                uint8_t* elem, bool tied = false);

// GPTQ's coding of a group it has just fitted (alpha[q] and *offset, the fit of v[len] with
// weights d[len], nullable) as scale set `set` of m, whose line scales are set and whose codes for
// the set are those of the fit the line scales came from (fit_line_scales). The α are taken in
// canonical order (|α| descending; ≥ 0, the grid picks the signs of the bits), rounded to codes
// and searched on v. Where the fit leaves the line's scales (an α above its super scale, an
// offset outside the range), the sweep's error feedback has moved the group away from that
// earlier fit, and the clamped codes can sit far from any good grid (a fit that spends a plane on
// an outlier, say): the search then also starts from the codes m held for the set (in the line
// by construction) and the better result is kept. Stores the codes and their decoded scales in
// m, returns the decoded scales in alpha / *offset; elem[len] is scratch.
void code_fitted_set(format::BcqMatrix& m, int64_t set, const float* v, const double* d, int64_t len,
                     CodeSearch& search, uint8_t* elem, float* alpha, float* offset);

}  // namespace detail
}  // namespace lutq::quant
