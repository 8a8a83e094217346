// The lookup tables of LUT-GEMM, exactly as every LUT backend builds them (the spec the SIMD
// builds must match bit for bit). See docs/kernels.md.
//
// For chunk c (activations x[4c .. 4c+4)) and index p in [0,16):
//   T_c[p] = ((s_0 + s_1) + s_2) + s_3,   s_t = bit_t(p) ? +x[4c+t] : −x[4c+t]
// summed left to right in fp32 (no FMA contraction). Bit t of p is the weight bit of activation
// 4c+t, which is bit (4c+t)%8 of the canonical packed byte: the low nibble of a canonical byte
// indexes chunk 2j, the high nibble chunk 2j+1.
//
// int8 tables: activations are split into blocks of kb = lut_block(...) (a multiple of 32 that
// divides k, and the per-OC group when g < k). Per block:
//   amax = max |T_c[p]| over the block's chunks and p;  scale = amax / 127;
//   inv = amax > 0 ? 127 / amax : 0;  Tq_c[p] = (int8) clamp(nearbyint(T_c[p] * inv), −127, 127)
// with round-half-to-even. A lookup sum over a block (at most 64 entries of |Tq| <= 127) fits
// int16, which the SIMD kernels use.
#pragma once

#include <cstdint>

#include "format/bcq_matrix.h"
#include "kernels/kernel.h"

namespace lutq::kernels {

// Activations per int8-table scale block for this matrix; 0 when k is not a multiple of 32.
// Per-OC with g < k: kb = g. Otherwise the largest of 256, 128, 64, 32 that divides k.
int64_t lut_block(const format::BcqMatrix& w);
int64_t lut_block_for(int64_t k, const format::BcqConfig& cfg);

// tables[c*16 + p] = T_c[p] for c in [0, k/4); k must be a multiple of 4.
void build_tables_f32(const float* x, int64_t k, float* tables);

// What every LUT backend (scalar, avx2, avx512) requires of a valid matrix (Backend::check's
// precondition): k a multiple of 32 (whole chunk pairs and int8-table blocks). Clear error
// otherwise.
Status lut_check(const format::BcqMatrix& w, Precision p);

// Whether the per-OC LUT kernels fold w's planes (PackedMatrix::uniform): per-OC, q in 2..4, and
// in every group α_i == fp16(α_0·2^i) bit for bit with α_0 finite (RTN's uniform grids, with or
// without offsets, fp16 or coded scales). The fast path then adds a block's lookups of all planes
// as integers weighted 2^i and scales once per block and group by α_0 (docs/kernels.md "Uniform
// scales"); the exact path and the int8 partial sums are unchanged.
bool lut_uniform(const format::BcqMatrix& w);

// Quantizes fp32 tables of k activations to int8: tq[c*16 + p], scales[b] for b in [0, k/kb).
void quantize_tables_i8(const float* tables, int64_t k, int64_t kb, int8_t* tq, float* scales);

}  // namespace lutq::kernels
