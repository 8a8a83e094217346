// The kernel-backend interface: one table of function pointers per ISA, chosen once at start-up
// (dispatch.h). Every backend computes y[m,n] = x[m,k] · W[n,k]^T for a BCQ matrix W, with fp32
// activations and outputs, 1 <= m <= kMaxM per call. Algorithm and error bounds: docs/kernels.md.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/aligned_buffer.h"
#include "core/cpu.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "kernels/tile_layout.h"

namespace lutq::kernels {

// `ref` dequantizes and accumulates in double (the accuracy spec); `scalar` is the scalar LUT
// reference that performs exactly the algorithm of the SIMD backends (their spec). `cuda` is an
// NVIDIA GPU (kernels/cuda/, docs/kernels.md "CUDA"): a row of the same table rather than a
// separate device enum, so BcqLinear, --isa / LUTQ_ISA and the kernel grid take it unchanged; it
// is used only on request, never picked by default.
enum class Isa : uint8_t { kRef = 0, kScalar = 1, kAvx2 = 2, kAvx512 = 3, kCuda = 4 };
constexpr int kNumIsas = 5;

// Table precision of the LUT backends. kExact: fp32 tables. kFast: int8 tables with one fp32
// scale per block of activations (T-MAC style), integer partial sums. `ref` ignores it.
enum class Precision : uint8_t { kExact = 0, kFast = 1 };

const char* isa_name(Isa isa);
Result<Isa> parse_isa(std::string_view name);  // "ref", "scalar", "avx2", "avx512", "cuda"
const char* precision_name(Precision p);
Result<Precision> parse_precision(std::string_view name);  // "exact", "fast"

constexpr int kMu = 4;  // activations per lookup table
constexpr int kTableSize = 1 << kMu;  // 16 entries
constexpr int64_t kMaxM = 32;  // rows of x per backend call; larger m is tiled by BcqLinear

// A matrix in one backend's layout, produced by Backend::repack.
struct PackedMatrix {
  Isa isa = Isa::kRef;
  Precision precision = Precision::kExact;
  // Shape and configuration always; bits/alpha/offset only for backends that compute on the
  // canonical layout (ref, scalar). SIMD backends leave those vectors empty.
  format::BcqMatrix source;
  AlignedBuffer data;  // the backend layout (empty for ref, scalar)
  int64_t row_tile = 1;  // rows are padded to a multiple of this in `data`
  // Coded per-OC layouts (kernels/coded_scales.h): every super scale is short
  // (format::is_short_super), so α = code·step exactly and the kernels skip the fp16 rounding.
  bool exact_steps = false;
  // Per-OC uniform scales (lut_uniform): the fast path folds the planes, adding a block's lookups
  // as Σ_i 2^i·P_i and scaling once by α_0 (a different float order from the per-plane one). The
  // scalar reference and avx2 set it where lut_uniform(w); avx512 and cuda leave it false, and
  // a test comparing one of them with the scalar reference copies it (scalar_spec).
  bool uniform = false;
  // avx2, avx512: where everything sits in `data` (kernels/tile_layout.h), computed once by
  // repack (round_alpha already !exact_steps) and read by every gemm; default elsewhere.
  TileLayout layout;
  // Backend-owned state outside host memory (cuda: the weights uploaded by Backend::place);
  // null for the CPU backends. Type-erased so this header needs no CUDA headers.
  std::shared_ptr<void> device;
};

struct Backend {
  Isa isa;
  // Whether this CPU can run the backend.
  bool (*available)(const CpuFeatures& cpu);
  // Whether the backend takes this matrix and precision; a clear error otherwise. Precondition:
  // w is valid, codes included (format::validate_with_codes): checked once where a matrix
  // enters, lutqfile::read_bcq for a file's, before packing for one built in memory.
  Status (*check)(const format::BcqMatrix& w, Precision p);
  // Canonical -> backend layout. Precondition: check() passed.
  PackedMatrix (*repack)(const format::BcqMatrix& w, Precision p);
  // Backend layout -> canonical (round trip: unpack(repack(w)) == w).
  format::BcqMatrix (*unpack)(const PackedMatrix& w);
  // y[m,n] = x[m,k] · W^T; x rows have stride k, y rows stride n; 1 <= m <= kMaxM.
  void (*gemm)(const PackedMatrix& w, const float* x, int64_t m, float* y, ThreadPool& pool);
  // The fast path's integer partial sums for one activation row (test hook):
  // out[(r*q + i)*num_blocks + b] = Σ over the chunks of block b of the int8 table entries that
  // row r, plane i looks up. Block size: lut_block(w). nullptr where the backend has no int8 path.
  void (*int8_partials)(const PackedMatrix& w, const float* x, int32_t* out);
  // Optional (nullptr on the CPU backends, which cannot fail once check() passed). A backend
  // whose work can fail at run time (device memory, driver errors: cuda) provides both, and
  // BcqLinear calls them so such a failure comes back as a Status: `place` runs once after
  // repack (cuda: uploads the layout to the device), `gemm_status` replaces gemm.
  Status (*place)(PackedMatrix& w) = nullptr;
  Status (*gemm_status)(const PackedMatrix& w, const float* x, int64_t m, float* y) = nullptr;
  // Optional: ys[j][m, n_j] = x · W_j^T for several matrices of this backend that
  // share_oc_tables, in one call (tables built once, one tile queue over all their rows, at
  // most two pool round trips in all). nullptr: callers run gemm on each.
  void (*gemm_shared)(std::span<const PackedMatrix* const> ws, const float* x, int64_t m, std::span<float* const> ys,
                      ThreadPool& pool) = nullptr;
};

// Whether a and b can share one set of activation tables in Backend::gemm_shared: both per-OC
// on the same backend and precision, with the same k and group size (hence table block).
bool share_oc_tables(const PackedMatrix& a, const PackedMatrix& b);

// For backends that compute on the canonical layout (ref, scalar): the packed form is a copy.
PackedMatrix canonical_packed(const format::BcqMatrix& w, Isa isa, Precision p);
// The scalar reference of w running the algorithm `under_test` runs (its `uniform` choice), for
// the bit-for-bit comparisons of a backend with its spec.
PackedMatrix scalar_spec(const format::BcqMatrix& w, const PackedMatrix& under_test);
format::BcqMatrix canonical_unpack(const PackedMatrix& w);

// The backends, each defined in its own folder (ref/, avx2/, avx512/, cuda/).
const Backend& ref_backend();
const Backend& scalar_backend();
const Backend& avx2_backend();
const Backend& avx512_backend();
const Backend& cuda_backend();  // kernels/cuda/ (or cuda_disabled.cc when built without CUDA)
const Backend& backend(Isa isa);
// Why the cuda backend is not available: built without CUDA, or no device / driver error.
std::string cuda_unavailable_reason();

}  // namespace lutq::kernels
