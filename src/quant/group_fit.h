// Internal to src/quant: the per-group fitting machinery behind quantize() and fit_group().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/fp16.h"
#include "quant/quantize.h"

namespace lutq::quant::detail {

inline constexpr double kFp16Max = 65504.0;

// Nearest fp16 value, saturating to ±65504 instead of overflowing to infinity.
inline double round_fp16_sat(double x) {
  if (x >= kFp16Max) return kFp16Max;
  if (x <= -kFp16Max) return -kFp16Max;
  return round_to_fp16(static_cast<float>(x));
}

// A valid stored half step α_0 of a uniform grid (quantize.h, RTN) near a0: positive, fp16 (at
// least the smallest subnormal), small enough that α_{q−1} = α_0·2^(q−1) stays finite.
double clamp_half_step(double a0, int q);

// Index of a nearest value in a sorted grid of `size` (a power of two) values, given the size−1
// midpoints between neighbours: a branchless binary search; ties go to the upper value.
inline int nearest_index(const double* mids, int size, double x) {
  int pos = 0;
  for (int step = size / 2; step > 0; step >>= 1) pos += mids[pos + step - 1] <= x ? step : 0;
  return pos;
}

// The sorted grid of the 2^q values offset + Σ_i ±α_i and the code of each (bit i of a code set
// means +α_i). Built by merging plane by plane, O(2^q); α may be negative or zero.
class ValueGrid {
 public:
  void build(const double* alpha, int q, double offset);
  int size() const { return size_; }
  const double* values() const { return values_.data(); }
  const uint8_t* codes() const { return codes_.data(); }
  const double* mids() const { return mids_.data(); }
  // Index of a value nearest to x (nearest_index: ties go to the upper value).
  int nearest(double x) const { return nearest_index(mids_.data(), size_, x); }
  // Gives each of v[0..len) its nearest grid value: calls fn(j, code, residual) in order of j,
  // with that value's code and residual = double(v[j]) − value. The one "nearest code on a
  // value grid" loop of the fits (final codes, clipped fits, code searches).
  template <typename Fn>
  void assign(const float* v, int64_t len, Fn&& fn) const {
    for (int64_t j = 0; j < len; ++j) {
      const double x = v[j];
      const auto idx = static_cast<size_t>(nearest(x));
      fn(j, codes_[idx], x - values_[idx]);
    }
  }

 private:
  int size_ = 0;
  std::vector<double> values_, mids_, tmp_values_;
  std::vector<uint8_t> codes_, tmp_codes_;
};

// Fits groups one after another, reusing its scratch buffers. Not thread-safe: one per thread.
class GroupFitter {
 public:
  // Fits v[len] with q planes. Writes alpha[q] and *offset (fp16-representable; offset 0 when
  // !with_offset) and codes[len] (bit i = plane i, 1 = +1). weight[len] (nullable; finite,
  // >= 0) weighs each element's squared error: the fit minimises Σ d_j (v_j − grid value)².
  // Weights that are all equal (or sum to 0) are ignored: the fit is then the unweighted one,
  // bit for bit. Returns the (weighted) squared error of the stored form, in double.
  double fit(const float* v, int64_t len, int q, Method method, bool with_offset, int iterations,
             float* alpha, float* offset, uint8_t* codes, const double* weight = nullptr);

 private:
  // The range-covering uniform grid (quantize.h, RTN); its codes and (weighted) squared error.
  double fit_rtn(const float* v, int64_t len, int q, bool with_offset, float* alpha, float* offset,
                 uint8_t* codes);
  // A uniform grid the group already sits on exactly (group_fit_rtn.cc): its distinct values are
  // lo + j·s for integers j spanning at most 2^q − 1 steps (weights dequantized from a
  // block-quantized source, e.g. a GGUF Q4_K sub-block of 32). Sets the centre *z and α_0 = s/2
  // (both fp16) of a grid holding them and returns true; false when v is on no such grid.
  bool exact_grid(const float* v, int64_t len, int q, double* z, double* a0);
  // Weighted RTN (group_fit_rtn.cc): the lowest weighted error among the range-covering grid and
  // uniform grids over narrower ranges, each also refitted by weighted least squares.
  double fit_rtn_weighted(const float* v, int64_t len, int q, bool with_offset, float* alpha, float* offset,
                          uint8_t* codes);
  // Codes of v on the uniform grid z + 2·a0·(c − (2^q−1)/2), c clamped to [0, 2^q−1]; returns
  // the (weighted) squared error.
  double rtn_assign(const float* v, int64_t len, int q, double z, double a0, uint8_t* codes) const;
  // Greedy or alternating: the fits of fit() that start from the greedy planes.
  double fit_bcq(const float* v, int64_t len, int q, Method method, bool with_offset, int iterations,
                 float* alpha, float* offset, uint8_t* codes);
  // Whether the grid offset ± Σ|α_i| (fp16) leaves a weight of v more than one smallest step
  // beyond its ends. The greedy planes' scales are means of |residual| over the group, so their
  // reach stays within a few typical magnitudes and they clip every weight beyond it.
  static bool clips(const float* v, int64_t len, int q, const double* alpha, double offset);
  // A greedy fit's other candidates: the RTN grid and, when weighted, the unweighted greedy
  // planes (weighted means need not lower the weighted error of so crude a fit), the latter only
  // if they do not clip unless `may_clip`. Replaces alpha/offset/codes by a candidate with an
  // error below `err`; returns the error kept.
  double keep_simple_fits(const float* v, int64_t len, int q, bool with_offset, bool may_clip, double err,
                          float* alpha, float* offset, uint8_t* codes);
  // Element e's weight (1 when unweighted).
  double weight_of(int64_t e) const { return weight_ == nullptr ? 1.0 : weight_[e]; }
  void fit_greedy_raw(const float* v, int64_t len, int q, bool with_offset, double* alpha, double* offset);
  // Rounds alpha/offset to fp16 (saturating), writes them out and gives every element the code
  // of its nearest grid value. Returns the squared error.
  double finalize(const float* v, int64_t len, int q, const double* alpha, double offset, float* alpha_out,
                  float* offset_out, uint8_t* codes);
  // An unrounded fit during the alternation and its squared error.
  struct State {
    std::array<double, format::kMaxBits> alpha{};
    double offset = 0.0;
    double err = std::numeric_limits<double>::infinity();
  };
  // Alternating rounds from `start`, whose assignment code_count_/code_sum_ describe (after
  // sort_group() for the group); replaces *best by the final state where that has a smaller error.
  void alternate(int64_t len, int q, bool with_offset, int iterations, const State& start, State* best);
  // Alternating rounds from geometric grids spanning the sorted group's range.
  void alternate_from_grids(int64_t len, int q, bool with_offset, int iterations, State* best);
  // Sorted copy of the group with prefix sums of d, d·x and d·x² (d = 1 unweighted), so one
  // assignment round costs O(2^q · log len) instead of O(len · q).
  void sort_group(const float* v, int64_t len);
  // Weighs (Σ d) and weighted sums (Σ d·x) of the elements of each code into code_count_/code_sum_.
  void cells_from_codes(const float* v, int64_t len, int q, const uint8_t* codes);
  // Assigns every element its nearest grid value, leaving the count and sum of each code in
  // code_count_/code_sum_; returns the squared error.
  double assign_cells(int64_t len, int q, const double* alpha, double offset);
  // (Weighted) least squares for alpha (and offset) from code_count_/code_sum_ (which it
  // transforms in place); false if the system is singular.
  bool solve_scales(int q, bool with_offset, double* alpha, double* offset);

  ValueGrid grid_;
  const double* weight_ = nullptr;  // the current fit's element weights; null: unweighted
  std::vector<double> residual_, sorted_, prefix0_, prefix1_, prefix2_, code_count_, code_sum_;
  std::vector<uint8_t> trial_codes_, uniform_codes_, grid_codes_;
  std::vector<double> distinct_;
  std::vector<size_t> ends_, order_;
};

}  // namespace lutq::quant::detail
