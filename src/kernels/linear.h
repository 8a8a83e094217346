// The kernels' front door: a BCQ matrix repacked for one backend, multiplied with any number of
// activation rows (tiled into calls of at most kMaxM rows).
#pragma once

#include <optional>

#include "kernels/int8/bcq_int8.h"
#include "kernels/kernel.h"

namespace lutq::kernels {

// Picks the backend: `requested` if given, else the LUTQ_ISA environment variable if set, else
// the best backend this CPU runs (avx512 > avx2 > scalar). Errors name the unknown or
// unsupported ISA.
Result<Isa> select_isa(const CpuFeatures& cpu, std::optional<Isa> requested = std::nullopt);

// Backends this CPU can run, best first.
std::vector<Isa> available_isas(const CpuFeatures& cpu);

class BcqLinear {
 public:
  // Validates w, checks the backend takes it (clear error otherwise) and repacks. `path` kLut or
  // kInt8Gemm forces the GEMM path for every m (int8 only where the matrix and ISA allow it, LUT
  // elsewhere); kAuto lets choose_path decide per call. Without it, the LUTQ_GEMM_PATH environment
  // variable (lut, int8, auto) says; unset means lut. Where the int8 path can be taken, the
  // matrix is also packed for it.
  static Result<BcqLinear> create(const format::BcqMatrix& w, Isa isa, Precision precision,
                                  std::optional<GemmPath> path = std::nullopt);

  // y[m,n] = x[m,k] · W^T for any m >= 1 (x stride k, y stride n).
  Status forward(const float* x, int64_t m, float* y, ThreadPool& pool) const;

  int64_t n() const { return packed_.source.n; }
  int64_t k() const { return packed_.source.k; }
  Isa isa() const { return packed_.isa; }
  Precision precision() const { return packed_.precision; }
  const PackedMatrix& packed() const { return packed_; }
  // Bytes a forward pass streams for the weights (backend layout, scales included).
  int64_t weight_bytes() const;
  // The path forward() takes for m activation rows.
  GemmPath path_for(int64_t m) const;
  // Bytes of the int8-path packing (0 where there is none).
  int64_t int8_bytes() const { return int8_ ? int8_->bytes() : 0; }

 private:
  explicit BcqLinear(PackedMatrix packed) : packed_(std::move(packed)) {}
  PackedMatrix packed_;
  std::shared_ptr<const BcqInt8Packed> int8_;  // null where the int8 path is never taken
  std::optional<GemmPath> forced_;
};

}  // namespace lutq::kernels
