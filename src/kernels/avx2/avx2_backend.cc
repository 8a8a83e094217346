// The AVX2 backend's function table and entry points. Nothing here needs AVX2 instructions, and
// available() must run on any x86-64 CPU, so this file is compiled for the baseline; the AVX2
// code is in the other avx2_*.cc files.
#include <span>
#include <vector>

#include "kernels/avx2/avx2_internal.h"
#include "kernels/kernel.h"
#include "kernels/lut_tables.h"

namespace lutq::kernels {
namespace {

bool avx2_available(const CpuFeatures& cpu) { return cpu.avx2; }

// Everything lut_check accepts: q 1..8, any valid g (k or n included), both orientations,
// offsets, any n >= 1 (rows are padded to the 32-row tile), k a multiple of 32.
Status avx2_check(const format::BcqMatrix& w, Precision p) { return lut_check(w, p); }

void avx2_gemm(const PackedMatrix& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  const avx2::Layout& L = w.layout;
  const bool fast = w.precision == Precision::kFast;
  if (L.per_oc) {
    const avx2::OcPart part{L, w.data.data(), y};
    avx2::gemm_oc(std::span(&part, 1), fast, x, m, pool);
  } else {
    avx2::gemm_ic(L, fast, w.data.data(), x, m, y, pool);
  }
}

// Per-OC matrices that share_oc_tables: one table build and one tile queue for all of them.
void avx2_gemm_shared(std::span<const PackedMatrix* const> ws, const float* x, int64_t m, std::span<float* const> ys,
                 ThreadPool& pool) {
  std::vector<avx2::OcPart> parts;
  parts.reserve(ws.size());
  for (size_t j = 0; j < ws.size(); ++j) parts.push_back({ws[j]->layout, ws[j]->data.data(), ys[j]});
  avx2::gemm_oc(parts, ws[0]->precision == Precision::kFast, x, m, pool);
}

void avx2_int8_partials(const PackedMatrix& w, const float* x, int32_t* out) {
  const avx2::Layout& L = w.layout;
  if (L.per_oc) {
    avx2::partials_oc(L, w.data.data(), x, out);
  } else {
    avx2::partials_ic(L, w.data.data(), x, out);
  }
}

}  // namespace

const Backend& avx2_backend() {
  static const Backend kBackend = [] {
    Backend b{Isa::kAvx2,  avx2_available, avx2_check,         avx2::repack,
              avx2::unpack, avx2_gemm,      avx2_int8_partials};
    b.gemm_shared = avx2_gemm_shared;
    return b;
  }();
  return kBackend;
}

}  // namespace lutq::kernels
