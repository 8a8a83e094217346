// Shared by the int8 path's SIMD kernels (bcq_int8_avx512.cc, bcq_int8_amx.cc): the expansion of
// one (16-row tile, group) of a BcqInt8Packed to int8 levels.
#pragma once

#include <cstdint>

#include "kernels/int8/bcq_int8.h"

namespace lutq::kernels {

// out[quad*64 + 4·row + j] = wq + 128 (u8) of row `row` of the tile and column 4·quad + j of the
// group, for `quads` quads from `masks` (the tile's plane masks at the group's first quad) and
// `lut` (the (tile, group) level table). Precondition: bcq_int8_avx512_available (VBMI + GFNI).
// The layout is AMX's B-tile layout as it stands: 16 quads = 16 tile rows of 64 bytes.
void bcq_int8_expand(int q, const uint64_t* masks, const uint8_t* lut, int64_t quads, int8_t* out);

// Group j of tiles [tile0, tile0 + h) (h = 1 or 2) expanded into scratch (g/4 quads x 64 bytes
// per tile): wexp[e] points at tile e's quads, ws[e] at its 16 s_w.
void bcq_int8_expand_tiles(const BcqInt8Packed& w, int64_t tile0, int h, int64_t j, int8_t* scratch,
                           const int8_t* wexp[2], const float* ws[2]);

}  // namespace lutq::kernels
