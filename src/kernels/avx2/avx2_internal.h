// Internal interface of the AVX2 backend, shared by the files of src/kernels/avx2/ only.
// The packed layout is pictured in avx2_repack.cc; the inner loops are in avx2_kernels.h, the
// drivers in avx2_gemm_oc.cc / avx2_gemm_ic.cc, the table builds in avx2_tables.cc. No SIMD types
// cross these declarations, so baseline and AVX2 code may call each other freely (the AVX2 ones
// only once available() said yes).
#pragma once

#include <cstdint>
#include <span>

#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "kernels/coded_scales.h"
#include "kernels/kernel.h"
#include "kernels/tile_layout.h"

namespace lutq::kernels::avx2 {

constexpr int64_t kTileRows = kSimdTileRows;  // rows per tile: one 32-byte vector holds one byte of each

// The byte slot of tile row r (0..31) in every 32-byte row vector. The fast kernel's
// unpacklo/hi_epi8 + maddubs leave int16 sums of slots {0..7, 16..23} (lo) and {8..15, 24..31}
// (hi), and vpmaddwd with (1,0) / (0,1) widens their even / odd int16 lanes: with this order the
// four int32 vectors are rows 0..7, 8..15, 16..23, 24..31.
// Slot bits (4 3 2 1 0) = row bits (2 4 1 0 3); e.g. rows 0..7 sit in slots 0 2 4 6 16 18 20 22.
constexpr int tile_slot(int r) {
  return ((r >> 3) & 1) | ((r & 3) << 1) | (((r >> 4) & 1) << 3) | (((r >> 2) & 1) << 4);
}

// Where everything sits in PackedMatrix::data (see the picture in avx2_repack.cc): the layout
// both SIMD backends share (kernels/tile_layout.h), computed once by repack into
// PackedMatrix::layout.
using Layout = TileLayout;

PackedMatrix repack(const format::BcqMatrix& w, Precision p);
format::BcqMatrix unpack(const PackedMatrix& w);

// --- Table builds (bit-identical to build_tables_f32 / quantize_tables_i8). ---

// out[c*8 + p] = T_c[p] for p < 8, chunks [0, chunks) of x (T_c[15 - p] = −T_c[p] exactly).
void tables_f32_half(const float* x, int64_t chunks, float* out);
// int8 tables of one block of kb activations (kb a multiple of 32, at most 256): tq[c*16 + p];
// returns the block's scale. scratch holds kb*4 floats.
float tables_i8(const float* x, int64_t kb, int8_t* tq, float* scratch);
// out[c] = fp32(alpha[c]) * x[c] for c < len (len a multiple of 8): one rounding, as the scalar
// reference folds per-IC scales into the activations.
void scale_by_f16(const uint16_t* alpha, const float* x, int64_t len, float* out);
// The same from one-byte codes and fp32 steps (per-IC coded layouts): out[c] = α_c * x[c] with
// α_c = fp16(fp32(code[c] * step[c])), the file's decoded α bit for bit (kernels/coded_scales.h).
void scale_by_codes(const uint8_t* code, const float* step, const float* x, int64_t len, float* out);
// sums[l] = x_l[0] + x_l[1] + ... + x_l[len-1] left to right, for `count` vectors x_l = xs[l].
void sums_in_order(const float* const* xs, int count, int64_t len, float* sums);
// Σ fp32(z[c]) * x[c] for c < len (len a multiple of 8), in any order (reassociated).
float dot_f16(const uint16_t* z, const float* x, int64_t len);

// --- The drivers (avx2_gemm_oc.cc, avx2_gemm_ic.cc); data is PackedMatrix::data. ---
// One matrix of a per-OC gemm: its layout, packed data and output y[m][L.n].
struct OcPart {
  Layout L;
  const uint8_t* data = nullptr;
  float* y = nullptr;
};
// y_j = x · W_j^T for every part; the parts share k, the group and the table block (tables are
// built once for all of them) and their tiles are streamed from one queue.
void gemm_oc(std::span<const OcPart> parts, bool fast, const float* x, int64_t m, ThreadPool& pool);
void gemm_ic(const Layout& L, bool fast, const uint8_t* data, const float* x, int64_t m, float* y,
             ThreadPool& pool);
// out[(r*q + i)*nb + b]: the fast path's int32 block sums for one activation row.
void partials_oc(const Layout& L, const uint8_t* data, const float* x, int32_t* out);
void partials_ic(const Layout& L, const uint8_t* data, const float* x, int32_t* out);

}  // namespace lutq::kernels::avx2
