// Canonical BCQ <-> the AVX-512 layout (the same for both precisions). Plain C++: nothing here
// needs AVX-512, so it is compiled for the baseline.
//
// Rows are cut into tiles of 32 (the last one padded with zero bits, scales and offsets), a tile
// into two groups of 16 rows. A "step" is 32 activations; the step's bits of one row are one
// dword: 4 consecutive canonical bytes, little-endian, so nibble t of the dword (bits 4t..4t+3)
// indexes chunk t of the step (8 chunks of 4 activations). A "group vector" is 64 bytes: that
// dword of rows 0..15 of a group, in row order. A step of one plane of a tile is 128 bytes: the
// vector of rows 0..15, then of rows 16..31. A tile is a run of "units" along k, everything the
// inner loop needs for a unit contiguous, in the order it is consumed:
//
//   per-OC (unit = one group of g activations, g/32 steps per plane):
//
//   tile t | unit 0                                                    | unit 1 | ... |
//          | plane 0: steps x 128 B | ... | plane q-1: steps x 128 B                   |
//          | alpha plane 0: 32 x fp16 (rows 0..31 in order) | ... | alpha plane q-1    |
//          | offsets: 32 x fp16 (only with has_offset)                                 |
//   with compressed scales (kernels/coded_scales.h) the alphas of a unit are ceil(q/2) blocks of
//   64 bytes of one-byte codes (two planes per block) and the tile opens with q x 32 fp32 steps
//
//   per-IC (unit = one int8-table block of kb activations):
//
//   tile t | unit 0: plane 0: kb/32 steps x 128 B | ... | plane q-1 | unit 1 | ... |
//   after all tiles: alpha [n/g blocks][q][k] fp16, then offsets [n/g blocks][k] fp16
//
// Every piece is a multiple of 64 bytes, so every vector is 64-byte aligned. The byte counts are
// those of the AVX2 layout (only the order of the bits differs).
#include <cstring>

#include "core/check.h"
#include "format/scale_codes.h"
#include "kernels/avx512/avx512_internal.h"

namespace lutq::kernels::avx512 {
namespace {

// Byte offset, inside a unit's plane, of the dword of tile row rt in step s.
constexpr int64_t dword_at(int64_t s, int64_t rt) { return s * kStepBytes + (rt / kGroupRows) * 64 + (rt % kGroupRows) * 4; }

}  // namespace

PackedMatrix repack(const format::BcqMatrix& w, Precision p) {
  const Layout L = make_tile_layout(w);
  PackedMatrix out;
  out.isa = Isa::kAvx512;
  out.precision = p;
  out.source.n = w.n;
  out.source.k = w.k;
  out.source.cfg = w.cfg;
  out.row_tile = kTileRows;
  out.data = AlignedBuffer(static_cast<size_t>(L.total_bytes));
  uint8_t* d = out.data.data();
  const int q = L.q;
  const int64_t rb = w.row_bytes();
  const int64_t steps = unit_steps(L);
  for (int64_t r = 0; r < w.n; ++r) {
    const int64_t tile = r / kTileRows;
    const int64_t rt = r % kTileRows;
    for (int64_t u = 0; u < L.units; ++u) {
      uint8_t* up = d + tile * L.tile_bytes + L.head_bytes + u * L.unit_bytes;
      for (int i = 0; i < q; ++i) {
        const uint8_t* src = w.bits.data() + (i * w.n + r) * rb + u * (L.unit / 8);
        for (int64_t s = 0; s < steps; ++s) std::memcpy(up + i * L.plane_bytes + dword_at(s, rt), src + 4 * s, 4);
      }
      if (L.per_oc) {
        const int64_t set = r * L.units + u;
        if (L.coded) {
          write_unit_codes(w, r, u, up + L.alpha_in_unit(0));
        } else {
          auto* a = reinterpret_cast<uint16_t*>(up + L.alpha_in_unit(0));
          for (int i = 0; i < q; ++i) a[i * kTileRows + rt] = w.alpha[static_cast<size_t>(set * q + i)];
        }
        if (L.has_offset) {
          reinterpret_cast<uint16_t*>(up + L.offset_in_unit())[rt] = w.offset[static_cast<size_t>(set)];
        }
      }
    }
  }
  if (L.coded) {
    out.source.codes = codes_beside_layout(w);
    out.exact_steps = all_supers_short(w);
    for (int64_t t = 0; L.per_oc && t < L.tiles; ++t) {
      write_tile_steps(w, t, reinterpret_cast<float*>(d + t * L.tile_bytes));
    }
  }
  if (!L.per_oc) write_ic_scales(w, L.coded, ic_scales_of(L), d);
  out.layout = L;
  out.layout.round_alpha = !out.exact_steps;
  return out;
}

format::BcqMatrix unpack(const PackedMatrix& pw) {
  const format::BcqMatrix& s = pw.source;
  const Layout& L = pw.layout;
  format::BcqMatrix w = format::make_empty(s.n, s.k, s.cfg).value();
  if (L.coded) {
    w.codes = s.codes;
    w.codes.alpha_code.assign(w.alpha.size(), 0);
  }
  const uint8_t* d = pw.data.data();
  const int q = L.q;
  const int64_t rb = w.row_bytes();
  const int64_t steps = unit_steps(L);
  for (int64_t r = 0; r < w.n; ++r) {
    const int64_t tile = r / kTileRows;
    const int64_t rt = r % kTileRows;
    for (int64_t u = 0; u < L.units; ++u) {
      const uint8_t* up = L.unit_at(d + tile * L.tile_bytes, u);
      for (int i = 0; i < q; ++i) {
        uint8_t* dst = w.bits.data() + (i * w.n + r) * rb + u * (L.unit / 8);
        for (int64_t st = 0; st < steps; ++st) std::memcpy(dst + 4 * st, up + i * L.plane_bytes + dword_at(st, rt), 4);
      }
      if (L.per_oc) {
        const int64_t set = r * L.units + u;
        if (L.coded) {
          read_unit_codes(up + L.alpha_in_unit(0), r, u, w);
        } else {
          const auto* a = reinterpret_cast<const uint16_t*>(up + L.alpha_in_unit(0));
          for (int i = 0; i < q; ++i) w.alpha[static_cast<size_t>(set * q + i)] = a[i * kTileRows + rt];
        }
        if (L.has_offset) {
          w.offset[static_cast<size_t>(set)] = reinterpret_cast<const uint16_t*>(up + L.offset_in_unit())[rt];
        }
      }
    }
  }
  if (!L.per_oc) read_ic_scales(d, L.coded, ic_scales_of(L), w);
  // The codes came from a matrix repack accepted: their decoding cannot fail.
  if (L.coded) LUTQ_CHECK(format::decode_scales(w).is_ok());
  return w;
}

}  // namespace lutq::kernels::avx512
