// Calibration statistics for GPTQ and AdaDim: the streaming second moment H = Σ_t x_t x_tᵀ (k×k)
// of a linear layer's input rows x_t, with the number of rows seen.
//
// Precision. H is kept in double. Rows arrive in tiles of at most kTileRows; within a tile the
// products are summed in fp32 (OpenBLAS SYRK), and each tile's k×k block is then added into
// the double accumulator. The fp32 part has error at most γ_T·Σ_t |x_ti·x_tj|
// with T = kTileRows (γ_T = T·u/(1 − T·u), u = 2^-24: about 1.5e-5 relative to Σ|products|),
// independent of how many rows are streamed; the double sum over tiles adds only
// ~(N/T)·2^-53. Plain fp32 accumulation would instead grow as N·u (8k tokens: 5e-4), and Kahan
// in fp32 would cost a second k×k buffer and an extra add per product in the hot loop, where
// the double accumulator is touched once per tile.
//
// Memory: k² doubles for H plus a k×k fp32 tile result; nothing grows with the number of rows.
// Work: k²·T flops per tile (the lower triangle), threaded by OpenBLAS.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"

namespace lutq {
class ThreadPool;
}  // namespace lutq

namespace lutq::quant {

class HessianAccumulator {
 public:
  static constexpr int64_t kTileRows = 256;

  // k >= 1 input features.
  static Result<HessianAccumulator> create(int64_t k);
  // An accumulator that continues from stored sums (a calibration cache): h is k×k, symmetric
  // and finite, its diagonal non-negative, rows >= 0; anything else is an error.
  static Result<HessianAccumulator> restore(int64_t k, int64_t rows, std::vector<double> h);

  // Adds rows x[m][k] (row stride k). Rejects null x, m < 0 and non-finite values (the message
  // names the row and column); on error H is unchanged.
  Status add(const float* x, int64_t m, ThreadPool* pool = nullptr);

  int64_t k() const { return k_; }
  int64_t rows() const { return rows_; }
  // H[k][k], row-major, symmetric: Σ over all rows added of x xᵀ (not divided by the count).
  const std::vector<double>& h() const { return h_; }
  // H / rows (the mean second moment; zeros when no row was added).
  std::vector<double> mean() const;

 private:
  HessianAccumulator() = default;
  void add_tile(const float* x, int64_t m, ThreadPool* pool);

  int64_t k_ = 0;
  int64_t rows_ = 0;
  std::vector<double> h_;  // full k×k; the lower triangle is accumulated, the upper mirrored
  std::vector<float> xt_;  // one tile's XᵀX (lower triangle), fp32 [k][k]
};

}  // namespace lutq::quant
