// Where everything sits in the packed data of the SIMD LUT backends (avx2, avx512). Both cut the
// rows into tiles of 32 and a tile into units along k with the same byte counts (only the order
// of the bits inside a plane differs: pictures in avx2_repack.cc and avx512_repack.cc), so one
// description serves both. Backend::repack computes it once and keeps it in
// PackedMatrix::layout, where every gemm reads it.
#pragma once

#include <cstdint>

#include "format/bcq_matrix.h"
#include "kernels/coded_scales.h"

namespace lutq::kernels {

constexpr int64_t kSimdTileRows = 32;  // rows per tile of both SIMD layouts

// The unit geometry (q, planes, alphas, offsets, coded steps) is TileUnits'
// (kernels/coded_scales.h). plane_bytes: (unit / 8) * 32.
struct TileLayout : TileUnits {
  int64_t n = 0, k = 0, g = 0;
  bool per_oc = true;
  bool has_offset = false;
  int64_t tiles = 0;        // ceil(n / 32)
  int64_t kb = 0;           // int8 table block (lut_block)
  int64_t unit = 0;         // activations per streaming unit: per-OC the group g, per-IC kb
  int64_t units = 0;        // k / unit
  int64_t tile_bytes = 0;   // head_bytes + units * unit_bytes
  int64_t blocks = 0;       // per-IC row blocks n / g (0 for per-OC)
  int64_t alpha_at = 0;     // per-IC: fp16 alpha [block][q][k] at this byte offset
  int64_t offset_at = 0;    // per-IC: fp16 offsets [block][k] at this byte offset
  int64_t steps_at = 0;     // per-IC coded: fp32 steps [q][k] (IcScales)
  int64_t total_bytes = 0;
};

// Where a per-IC layout keeps its scales (IcScales).
inline IcScales ic_scales_of(const TileLayout& L) { return {L.alpha_at, L.steps_at, L.offset_at, L.total_bytes}; }

// The layout of w's shape and configuration (coded where keeps_codes(w); with `uniform`, which
// needs lut_uniform(w), α_0 alone per unit and never coded). Precondition: lut_check(w) passed
// (so the unit is a multiple of 32). round_alpha is left true: repack clears it where
// PackedMatrix::exact_steps.
TileLayout make_tile_layout(const format::BcqMatrix& w, bool uniform = false);

}  // namespace lutq::kernels
