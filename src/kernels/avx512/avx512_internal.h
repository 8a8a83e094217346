// Internal interface of the AVX-512 backend, shared by the files of src/kernels/avx512/ only.
// The packed layout is pictured in avx512_repack.cc, the inner loops are in avx512_kernels.h,
// the drivers in avx512_gemm_oc.cc / avx512_gemm_ic.cc, the table builds in avx512_tables.cc.
// No SIMD types cross these declarations: the baseline code of avx512_backend.cc calls them only
// once available() said yes.
#pragma once

#include <cstdint>
#include <span>

#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "kernels/coded_scales.h"
#include "kernels/kernel.h"
#include "kernels/tile_layout.h"

namespace lutq::kernels::avx512 {

constexpr int64_t kTileRows = kSimdTileRows;   // rows per tile: two 16-row groups
constexpr int64_t kGroupRows = 16;  // rows per 64-byte vector: one dword (32 activations) each
constexpr int64_t kStepActs = 32;   // activations per dword: one "step" of the inner loops
constexpr int64_t kStepBytes = 128; // one step of one plane of a tile: 2 x 64 bytes
constexpr int kFullTable = 16;      // fp32 entries per chunk (all 16: vpermps takes 16)

// Where everything sits in PackedMatrix::data (see the picture in avx512_repack.cc): the layout
// both SIMD backends share (kernels/tile_layout.h), computed once by repack into
// PackedMatrix::layout.
using Layout = TileLayout;

// Steps (32 activations, one dword per row) per plane in a unit.
inline int64_t unit_steps(const Layout& L) { return L.unit / kStepActs; }

PackedMatrix repack(const format::BcqMatrix& w, Precision p);
format::BcqMatrix unpack(const PackedMatrix& w);

// --- Table builds (entries bit-identical to build_tables_f32 / quantize_tables_i8). ---

// out[c*16 + p] = T_c[p], chunks [0, chunks) of x.
void tables_f32(const float* x, int64_t chunks, float* out);
// The int8 tables of one block of kb activations (kb a multiple of 32, at most 256), in the
// vpermb order of the fast kernel: per step s (8 chunks), 128 bytes
//   [T_8s | T_8s+2 | T_8s+4 | T_8s+6]  [T_8s+1 | T_8s+3 | T_8s+5 | T_8s+7]   (16 bytes each)
// (i8_table_at gives the byte offset of chunk c). Returns the block's scale; scratch holds
// kb*4 floats.
float tables_i8(const float* x, int64_t kb, int8_t* tq, float* scratch);
constexpr int64_t i8_table_at(int64_t c) { return (c / 8) * kStepBytes + (c & 1) * 64 + ((c & 7) >> 1) * 16; }
// out[c] = fp32(alpha[c]) * x[c] for c < len (len a multiple of 16).
void scale_by_f16(const uint16_t* alpha, const float* x, int64_t len, float* out);
// The same from one-byte codes and fp32 steps (per-IC coded layouts): out[c] = α_c * x[c] with
// α_c = fp16(fp32(code[c] * step[c])), the file's decoded α bit for bit (kernels/coded_scales.h).
void scale_by_codes(const uint8_t* code, const float* step, const float* x, int64_t len, float* out);
// sums[l] = x_l[0] + x_l[1] + ... + x_l[len-1] left to right, for `count` vectors x_l = xs[l].
void sums_in_order(const float* const* xs, int count, int64_t len, float* sums);
// Σ fp32(z[c]) * x[c] for c < len (len a multiple of 16), in any order (reassociated).
float dot_f16(const uint16_t* z, const float* x, int64_t len);

// --- The drivers (avx512_gemm_oc.cc, avx512_gemm_ic.cc); data is PackedMatrix::data. ---
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

}  // namespace lutq::kernels::avx512
