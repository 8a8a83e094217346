// The AVX-512 backend's function table and entry points. Nothing here needs AVX-512
// instructions, and available() must run on any x86-64 CPU, so this file is compiled for the
// baseline; the AVX-512 code is in the other avx512_*.cc files. The kernels need F/BW/VL/DQ plus
// VBMI (vpermb, the 64-entry int8 table lookup) and VNNI (vpdpbusd): Ice Lake and later, Zen 4
// and later. CPUs with AVX-512 but without those two (Skylake-SP, Cascade Lake) use avx2.
#include <span>
#include <vector>

#include "kernels/avx512/avx512_internal.h"
#include "kernels/kernel.h"
#include "kernels/lut_tables.h"

namespace lutq::kernels {
namespace {

// CpuFeatures::avx512 already requires the OS to save zmm and opmask state (XCR0 bits 5-7).
bool avx512_available(const CpuFeatures& cpu) { return cpu.avx512 && cpu.avx512_vbmi && cpu.avx512_vnni; }

// Everything lut_check accepts: q 1..8, any valid g, both orientations, offsets, any n >= 1
// (rows are padded to the 32-row tile), k a multiple of 32.
Status avx512_check(const format::BcqMatrix& w, Precision p) { return lut_check(w, p); }

void avx512_gemm(const PackedMatrix& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  const avx512::Layout& L = w.layout;
  const bool fast = w.precision == Precision::kFast;
  if (L.per_oc) {
    const avx512::OcPart part{L, w.data.data(), y};
    avx512::gemm_oc(std::span(&part, 1), fast, x, m, pool);
  } else {
    avx512::gemm_ic(L, fast, w.data.data(), x, m, y, pool);
  }
}

// Per-OC matrices that share_oc_tables: one table build and one tile queue for all of them.
void avx512_gemm_shared(std::span<const PackedMatrix* const> ws, const float* x, int64_t m, std::span<float* const> ys,
                 ThreadPool& pool) {
  std::vector<avx512::OcPart> parts;
  parts.reserve(ws.size());
  for (size_t j = 0; j < ws.size(); ++j) parts.push_back({ws[j]->layout, ws[j]->data.data(), ys[j]});
  avx512::gemm_oc(parts, ws[0]->precision == Precision::kFast, x, m, pool);
}

void avx512_int8_partials(const PackedMatrix& w, const float* x, int32_t* out) {
  const avx512::Layout& L = w.layout;
  if (L.per_oc) {
    avx512::partials_oc(L, w.data.data(), x, out);
  } else {
    avx512::partials_ic(L, w.data.data(), x, out);
  }
}

}  // namespace

const Backend& avx512_backend() {
  static const Backend kBackend = [] {
    Backend b{Isa::kAvx512,  avx512_available, avx512_check,        avx512::repack,
              avx512::unpack, avx512_gemm,      avx512_int8_partials};
    b.gemm_shared = avx512_gemm_shared;
    return b;
  }();
  return kBackend;
}

}  // namespace lutq::kernels
