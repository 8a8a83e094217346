// The kernels' front door: a BCQ matrix repacked for one backend, multiplied with any number of
// activation rows (tiled into calls of at most kMaxM rows).
#pragma once

#include <optional>
#include <span>

#include "kernels/bytes/bcq_bytes.h"
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
  // Checks the backend takes w (clear error otherwise) and repacks. Precondition: w is valid,
  // codes included (format::validate_with_codes; Backend::check). `path` kLut or
  // kInt8Gemm forces the GEMM path for every m (int8 only where the matrix and ISA allow it, LUT
  // elsewhere); kAuto lets choose_path decide per call. Without it, the LUTQ_GEMM_PATH environment
  // variable (lut, int8, auto) says; unset means lut. Where the int8 path can be taken, the
  // matrix is also packed for it. A uniform-grid matrix with q >= 5 that use_byte_path takes
  // (kFast on avx512 with VNNI or avx2) is packed as byte codes INSTEAD of the backend layout and
  // every forward runs the byte-code kernel (kernels/bytes/bcq_bytes.h); packed() then holds
  // only the shape and configuration (no planes, no data): unpack() gives the matrix back.
  // `cpu`: the CPU's features where the caller keeps them (detect_cpu() runs cpuid, which a
  // virtual machine traps: tens of µs); null asks detect_cpu().
  static Result<BcqLinear> create(const format::BcqMatrix& w, Isa isa, Precision precision,
                                  std::optional<GemmPath> path = std::nullopt, const CpuFeatures* cpu = nullptr);

  // y[m,n] = x[m,k] · W^T for any m >= 1 (x stride k, y stride n).
  Status forward(const float* x, int64_t m, float* y, ThreadPool& pool) const;
  // ys[j][m, n_j] = x · W_j^T for layers that read the same x (q/k/v, gate/up). Where every
  // layer takes the LUT path on one backend with Backend::gemm_shared and all share_oc_tables,
  // one call builds the activation tables once and streams every layer's rows from one queue;
  // otherwise each runs forward(). Results equal forward()'s bit for bit either way.
  static Status forward_shared(std::span<const BcqLinear* const> lins, const float* x, int64_t m,
                               std::span<float* const> ys, ThreadPool& pool);

  int64_t n() const { return packed_.source.n; }
  int64_t k() const { return packed_.source.k; }
  Isa isa() const { return packed_.isa; }
  Precision precision() const { return packed_.precision; }
  const PackedMatrix& packed() const { return packed_; }
  // Whether forward() runs the byte-code kernel (then packed().data is empty).
  bool byte_path() const { return bytes_ != nullptr; }
  // The canonical matrix back from whichever layout is held (backend unpack or byte codes).
  format::BcqMatrix unpack() const;
  // Bytes a forward pass streams for the weights (backend layout, scales included).
  int64_t weight_bytes() const;
  // The path forward() takes for m activation rows (kLut also where byte_path(): it replaces
  // the LUT kernel for that matrix).
  GemmPath path_for(int64_t m) const;
  // Bytes held beside the LUT layout for small batches and prefill: the int8-path packing and
  // the uniform grids' nibble copy (0 where there is neither).
  int64_t prefill_copy_bytes() const { return (int8_ ? int8_->bytes() : 0) + (uniform_ ? uniform_->bytes() : 0); }

 private:
  explicit BcqLinear(PackedMatrix packed) : packed_(std::move(packed)) {}
  static BcqLinear create_bytes(const format::BcqMatrix& w, Isa isa, Precision precision, const CpuFeatures& cpu);
  PackedMatrix packed_;
  std::shared_ptr<const BcqInt8Packed> int8_;  // null where the int8 path is never taken
  Int8Kernel int8_kernel_ = Int8Kernel::kRef;  // the int8 path's kernel (best_int8_kernel)
  std::shared_ptr<const BcqBytesPacked> bytes_;  // non-null: the byte-code path, for every m
  // avx2, uniform grid, q <= 4: the int8 path's copy, byte codes for the vpmaddubsw kernel (the
  // LUT layout stays for the m the policy leaves on it).
  std::shared_ptr<const BcqBytesPacked> uniform_;
  ByteKernel byte_kernel_ = ByteKernel::kNone;
  std::optional<GemmPath> forced_;
};

}  // namespace lutq::kernels
