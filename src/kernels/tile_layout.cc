#include "kernels/tile_layout.h"

#include "kernels/lut_tables.h"

namespace lutq::kernels {

TileLayout make_tile_layout(const format::BcqMatrix& w, bool uniform) {
  const int64_t n = w.n;
  const int64_t k = w.k;
  const format::BcqConfig& cfg = w.cfg;
  TileLayout L;
  L.n = n;
  L.k = k;
  L.g = cfg.g;
  L.q = cfg.q;
  L.per_oc = cfg.orientation == format::Orientation::kPerOC;
  L.has_offset = cfg.has_offset;
  L.uniform = uniform && L.per_oc;
  L.coded = !L.uniform && keeps_codes(w);
  L.tiles = (n + kSimdTileRows - 1) / kSimdTileRows;
  L.kb = lut_block_for(k, cfg);
  L.unit = L.per_oc ? cfg.g : L.kb;
  L.units = k / L.unit;
  L.plane_bytes = L.unit / 8 * kSimdTileRows;
  L.unit_bytes = L.q * L.plane_bytes;
  // Per-OC: the planes, the alphas, then the offsets.
  if (L.per_oc) L.unit_bytes = L.offset_in_unit() + (L.has_offset ? 2 * kSimdTileRows : 0);
  L.head_bytes = tile_step_bytes(L.q, L.coded && L.per_oc);
  L.tile_bytes = L.head_bytes + L.units * L.unit_bytes;
  L.total_bytes = L.tiles * L.tile_bytes;
  if (!L.per_oc) {
    L.blocks = n / cfg.g;
    const IcScales ic = ic_scales_at(w, L.coded, L.total_bytes);
    L.alpha_at = ic.alpha_at;
    L.steps_at = ic.steps_at;
    L.offset_at = ic.offset_at;
    L.total_bytes = ic.end;
  }
  return L;
}

}  // namespace lutq::kernels
