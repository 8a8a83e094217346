// Fitting against compressed scales (format/scale_codes.h): the bits of every weight are chosen
// against the decoded scales, so the matrix a quantizer measures is the one the file holds.
//
// compress_scales (after quantize()'s fp16 fit): each line's super scales and offset range come
// from format::encode_scales; every group then starts from its rounded codes and runs a
// coordinate search (CodeSearch): each plane's code ± 1 and the offset code ± 1, a change kept
// only when it lowers the group's (weighted) squared error, repeated while a pass improves (at
// most kMaxPasses); each weight takes the nearest value of the decoded grid. The error is never
// above that of the rounded codes. GPTQ (gptq.h) takes the lines' super scales and ranges from a
// plain fit of the original weights and runs the same search on each group when it is fitted.
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

// Headroom of the lines' super scales and offset ranges over the plain fit's where GPTQ fits groups
// during its sweep: the error feedback moves the weights the sweep reaches late, so their fitted α
// and z leave the original weights' range and would clamp at the top code. On synthetic layers
// (q 3, g 32, 6-bit codes, 4 seeds) 1.5 took the calibrated error's excess over fp16 scales from
// 9-42 % to 1-10 % (per-OC) and from 20-64 % to 9-53 % (per-IC); static groups need none.
inline constexpr double kDynamicHeadroom = 1.5;

// GPTQ's line scales: the super scales and offset ranges (and rounded codes, which the sweep
// replaces) of `bits`-bit codes for a plain fit (opt, importance as for quantize()) of the
// original weights w[n*k], widened by `headroom`.
Result<format::ScaleCodes> line_scales(const float* w, int64_t n, int64_t k, const QuantOptions& opt,
                                       std::span<const double> importance, int bits, double headroom,
                                       ThreadPool* pool = nullptr);

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
  // and returns the (weighted) squared error.
  double run(const float* v, const double* d, int64_t len, int q, int bits, bool with_offset, const LineScales& line,
             uint8_t* alpha_code, uint8_t* offset_code, uint8_t* elem, int passes = kMaxPasses);

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
                uint8_t* elem);

}  // namespace detail
}  // namespace lutq::quant
