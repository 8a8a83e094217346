// Canonical BCQ <-> the AVX2 layout (the same for both precisions, up to the nibble code below).
//
// Rows are cut into tiles of 32 (the last one padded with zero bits, scales and offsets). A
// "row vector" is 32 bytes: byte j (8 activations = two 4-activation chunks: low nibble chunk 2j,
// high nibble chunk 2j+1, as in the canonical byte) of each of the tile's 32 rows, row r in byte
// slot tile_slot(r) (a fixed permutation, see avx2_internal.h, that makes the kernels' int16 ->
// int32 widening come out in row order). A tile is a run of "units" along k, everything the
// inner loop needs for one unit contiguous and in the order it is consumed, so a thread streams
// its tiles front to back:
//
//   per-OC (unit = one group of g activations, ug = g/8 row vectors per plane):
//
//   tile t | unit 0                                               | unit 1 | ... | unit k/g-1 |
//          | plane 0: ug x 32 B | plane 1: ug x 32 B | ... | plane q-1: ug x 32 B              |
//          | alpha plane 0: 32 x fp16 (rows 0..31 in order) | ... | alpha plane q-1: 32 x fp16 |
//          | offsets: 32 x fp16 (only with has_offset)                                          |
//   with compressed scales (kernels/coded_scales.h) the alphas of a unit are ceil(q/2) blocks of
//   64 bytes of one-byte codes (two planes per block) and the tile opens with q x 32 fp32 steps;
//   with uniform scales (PackedMatrix::uniform: α_i = α_0·2^i) they are α_0 alone, 32 x fp16
//
//   per-IC (unit = one int8-table block of kb activations, ub = kb/8 row vectors per plane):
//
//   tile t | unit 0: plane 0: ub x 32 B | ... | plane q-1: ub x 32 B | unit 1 | ... | unit k/kb-1 |
//   after all tiles: alpha [n/g blocks][q][k] fp16 (plane-major, for 8-wide loads), then
//                    offsets [n/g blocks][k] fp16 (only with has_offset)
//
// Every piece is a multiple of 32 bytes, so all row vectors are 32-byte aligned. Example: 4096 x
// 4096, q = 4, g = 128: a unit is 4 x 512 B of bits + 256 B of alpha, a tile 32 units (72 KiB).
// kExact stores each nibble p as p ^ (p & 8 ? 7 : 0): the exact kernel reads bits 0..2 as an
// index into table entries 0..7 and bit 3 as the sign (T[p] = −T[15 − p]). kFast stores p.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/fp16.h"
#include "format/scale_codes.h"
#include "kernels/avx2/avx2_internal.h"
#include "kernels/lut_tables.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")

namespace lutq::kernels::avx2 {
namespace {

// The exact path's code of both nibbles of a canonical byte (an involution: it also decodes).
constexpr uint8_t exact_code(uint8_t b) {
  return static_cast<uint8_t>(b ^ (((b >> 3) & 1) * 0x07) ^ (((b >> 7) & 1) * 0x70));
}

}  // namespace

PackedMatrix repack(const format::BcqMatrix& w, Precision p) {
  const Layout L = make_tile_layout(w, lut_uniform(w));
  PackedMatrix out;
  out.uniform = L.uniform;
  out.isa = Isa::kAvx2;
  out.precision = p;
  out.source.n = w.n;
  out.source.k = w.k;
  out.source.cfg = w.cfg;
  out.row_tile = kTileRows;
  out.data = AlignedBuffer(static_cast<size_t>(L.total_bytes));
  uint8_t* d = out.data.data();
  const bool exact = p == Precision::kExact;
  const int q = L.q;
  const int64_t rb = w.row_bytes();
  const int64_t vecs = L.unit / 8;  // row vectors per plane in a unit
  for (int64_t r = 0; r < w.n; ++r) {
    const int64_t tile = r / kTileRows;
    const int rt = static_cast<int>(r % kTileRows);
    const int slot = tile_slot(rt);
    for (int64_t u = 0; u < L.units; ++u) {
      uint8_t* up = d + tile * L.tile_bytes + L.head_bytes + u * L.unit_bytes;
      for (int i = 0; i < q; ++i) {
        const uint8_t* src = w.bits.data() + (i * w.n + r) * rb + u * vecs;
        uint8_t* dst = up + i * L.plane_bytes + slot;
        for (int64_t j = 0; j < vecs; ++j) dst[j * kTileRows] = exact ? exact_code(src[j]) : src[j];
      }
      if (L.per_oc) {
        const int64_t set = r * L.units + u;
        if (L.uniform) {
          reinterpret_cast<uint16_t*>(up + L.alpha_in_unit(0))[rt] = w.alpha[static_cast<size_t>(set * q)];
        } else if (L.coded) {
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
  if (L.uniform && w.codes.bits != 0) out.source.codes = uniform_codes_beside(w);
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
  const bool exact = pw.precision == Precision::kExact;
  const int q = L.q;
  const int64_t rb = w.row_bytes();
  const int64_t vecs = L.unit / 8;
  for (int64_t r = 0; r < w.n; ++r) {
    const int64_t tile = r / kTileRows;
    const int rt = static_cast<int>(r % kTileRows);
    const int slot = tile_slot(rt);
    for (int64_t u = 0; u < L.units; ++u) {
      const uint8_t* up = L.unit_at(d + tile * L.tile_bytes, u);
      for (int i = 0; i < q; ++i) {
        uint8_t* dst = w.bits.data() + (i * w.n + r) * rb + u * vecs;
        const uint8_t* src = up + i * L.plane_bytes + slot;
        for (int64_t j = 0; j < vecs; ++j) dst[j] = exact ? exact_code(src[j * kTileRows]) : src[j * kTileRows];
      }
      if (L.per_oc) {
        const int64_t set = r * L.units + u;
        if (L.uniform) {
          const float a0 = fp16_to_fp32(reinterpret_cast<const uint16_t*>(up + L.alpha_in_unit(0))[rt]);
          for (int i = 0; i < q; ++i) w.alpha[static_cast<size_t>(set * q + i)] = fp32_to_fp16(std::ldexp(a0, i));
        } else if (L.coded) {
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
  if (L.uniform && s.codes.bits != 0) {  // the codes kept beside; alpha is already the decoded one
    w.codes = s.codes;
    w.codes.alpha_code = uniform_codes_back(s.codes, q, w.alpha.size() / static_cast<size_t>(q));
  }
  if (!L.per_oc) read_ic_scales(d, L.coded, ic_scales_of(L), w);
  // The codes came from a matrix repack accepted: their decoding cannot fail.
  if (L.coded) LUTQ_CHECK(format::decode_scales(w).is_ok());
  return w;
}

}  // namespace lutq::kernels::avx2

#pragma GCC pop_options
